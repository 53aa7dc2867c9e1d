#!/usr/bin/env python3
"""Deterministic benchmark corpus for bench/static.sh.

Writes, under OUT:
  corpus/f/{100B,1KiB,16KiB,256KiB,4MiB}.bin   the single-file workloads
  corpus/z/NNNN.bin                             COUNT files, log-normal sizes
  walks/<name>.walk                             one request walk per workload
  manifest.json                                 parameters and a content digest

A walk file is what bench/lib/walk.lua reads: a first line "N M", then N lines
"path size" (the distinct URLs and their exact body sizes), then M lines, each
the 1-based index of the path to request next.

Everything comes from one seeded PRNG (random.Random(seed)), so the same
parameters give the same bytes, sizes and request order on every machine.
When manifest.json already holds the same parameters, nothing is rewritten.
"""

import argparse
import bisect
import hashlib
import json
import math
import os
import random
import shutil
import sys

SINGLE = [("100B", 100), ("1KiB", 1024), ("16KiB", 16 * 1024),
          ("256KiB", 256 * 1024), ("4MiB", 4 * 1024 * 1024)]
FORMAT = 2  # bump when the layout or the generator changes


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="output folder (e.g. bench/out)")
    p.add_argument("--seed", type=int, default=20261127)
    p.add_argument("--count", type=int, default=2000,
                   help="number of log-normal files")
    p.add_argument("--median", type=int, default=8192,
                   help="median size of the log-normal files, bytes")
    p.add_argument("--sigma", type=float, default=1.0,
                   help="sigma of ln(size) of the log-normal files")
    p.add_argument("--alpha", type=float, default=0.9,
                   help="Zipf exponent of the request walk")
    p.add_argument("--requests", type=int, default=200_000,
                   help="length of the Zipf request sequence")
    a = p.parse_args(argv)
    if a.count < 1 or a.requests < 1 or a.median < 1 or a.sigma < 0:
        p.error("count, requests and median must be >= 1, sigma >= 0")
    return a


def params_of(a):
    return {"format": FORMAT, "seed": a.seed, "count": a.count,
            "median": a.median, "sigma": a.sigma, "alpha": a.alpha,
            "requests": a.requests}


def write_walk(path, entries, sequence):
    """entries: list of (url, size); sequence: list of 0-based indexes."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{len(entries)} {len(sequence)}\n")
        for url, size in entries:
            f.write(f"{url} {size}\n")
        f.write("\n".join(str(i + 1) for i in sequence))
        f.write("\n")
    os.replace(tmp, path)


def generate(a):
    out = os.path.abspath(a.out)
    corpus = os.path.join(out, "corpus")
    walks = os.path.join(out, "walks")
    manifest_path = os.path.join(out, "manifest.json")
    params = params_of(a)
    try:
        with open(manifest_path) as f:
            old = json.load(f)
        if old.get("params") == params and os.path.isdir(corpus) \
                and os.path.isdir(walks):
            print(f"corpus: up to date ({old['digest'][:16]}, "
                  f"{old['bytes']} bytes)", file=sys.stderr)
            return old
    except (OSError, ValueError, KeyError):
        pass

    for d in (corpus, walks):
        if os.path.isdir(d):
            shutil.rmtree(d)
    os.makedirs(os.path.join(corpus, "f"))
    os.makedirs(os.path.join(corpus, "z"))
    os.makedirs(walks)

    rng = random.Random(a.seed)
    digest = hashlib.sha256()
    total = 0

    def put(rel, size):
        nonlocal total
        data = rng.randbytes(size)
        with open(os.path.join(corpus, rel), "wb") as f:
            f.write(data)
        digest.update(rel.encode() + b"\0" + data)
        total += size

    # The single-file workloads.
    for name, size in SINGLE:
        rel = f"f/{name}.bin"
        put(rel, size)
        write_walk(os.path.join(walks, f"{name}.walk"), [("/" + rel, size)],
                   [0])

    # Log-normal sizes: ln(size) ~ N(ln(median), sigma); at least 1 byte.
    mu = math.log(a.median)
    width = len(str(a.count - 1))
    zipf_entries = []
    for i in range(a.count):
        size = max(1, int(round(rng.lognormvariate(mu, a.sigma))))
        rel = f"z/{i:0{width}d}.bin"
        put(rel, size)
        zipf_entries.append(("/" + rel, size))

    # Zipf(alpha) popularity over a seeded permutation of the files, so that
    # popularity does not follow file number or size.
    ranks = list(range(a.count))
    rng.shuffle(ranks)  # ranks[r] = file index with popularity rank r+1
    weights = [1.0 / (r + 1) ** a.alpha for r in range(a.count)]
    cdf, acc = [], 0.0
    for w in weights:
        acc += w
        cdf.append(acc)
    sequence = []
    for _ in range(a.requests):
        r = bisect.bisect_left(cdf, rng.random() * acc)
        sequence.append(ranks[min(r, a.count - 1)])
    write_walk(os.path.join(walks, "zipf.walk"), zipf_entries, sequence)

    sizes = sorted(s for _, s in zipf_entries)
    seq_bytes = sum(zipf_entries[i][1] for i in sequence)
    manifest = {
        "params": params,
        "digest": digest.hexdigest(),
        "bytes": total,
        "zipf": {
            "files": a.count,
            "bytes": sum(sizes),
            "size_min": sizes[0],
            "size_median": sizes[len(sizes) // 2],
            "size_max": sizes[-1],
            "mean_request_bytes": round(seq_bytes / len(sequence)),
            "distinct_requested": len(set(sequence)),
        },
    }
    with open(manifest_path + ".tmp", "w") as f:
        json.dump(manifest, f, indent=1)
    os.replace(manifest_path + ".tmp", manifest_path)
    print(f"corpus: generated {total} bytes ({manifest['digest'][:16]})",
          file=sys.stderr)
    return manifest


if __name__ == "__main__":
    generate(parse_args(sys.argv[1:]))
