# shellcheck shell=bash
# Helpers for the A/B mode (--against) of bench/static.sh and bench/modules.sh:
# name the two builds compared and the command that reruns a workload.
# Sourced, not run.

# The git revision of the tree a binary lives in (`git describe --always
# --dirty`, e.g. 08de2a5 or 08de2a5-dirty), or nothing outside a git tree.
# It names the tree as it is now: a binary built before the last checkout or
# edit is not what it says, which is why the report also prints its hash.
ab_rev() { # PATH
  local dir
  dir=$(cd "$(dirname "$1")" 2>/dev/null && pwd) || return 0
  git -C "$dir" describe --always --dirty 2>/dev/null || true
}

# The first 12 hex digits of a file's SHA-256: two builds that print the
# same are the same binary.
ab_sha() { # PATH
  sha256sum "$1" | cut -c1-12
}

# A side's label: its role, then @revision when the binary is in a git tree
# (iolite@08de2a5, baseline@d75f6a0). The roles keep the two apart when
# both are the same build.
ab_label() { # ROLE PATH
  local rev
  rev=$(ab_rev "$2")
  echo "$1${rev:+@$rev}"
}

# The command that reruns SCRIPT as ARGS ran it, less any --workloads (the
# report appends the workloads that were not within the tolerance).
ab_rerun() { # SCRIPT ARGS...
  local cmd=$1 skip=0 arg
  shift
  for arg in "$@"; do
    if [ "$skip" = 1 ]; then skip=0; continue; fi
    if [ "$arg" = --workloads ]; then skip=1; continue; fi
    cmd+=" $(printf '%q' "$arg")"
  done
  echo "$cmd"
}
