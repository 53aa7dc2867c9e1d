//! `iolite sim` through the real binary: JSON lines, the plot, traces,
//! scenarios and bad input.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn iolite(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_iolite"))
        .args(args)
        .output()
        .expect("run the iolite binary")
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sim_cli");
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir.join(format!("{}-{name}", std::process::id()))
}

fn json_lines(out: &Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "exit {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone())
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

const SMALL: [&str; 8] = [
    "--objects",
    "400",
    "--requests",
    "3000",
    "--warmup",
    "1000",
    "--seed",
    "5",
];

#[test]
fn json_lines_have_the_fields_and_the_plot_is_drawn() {
    let plot = scratch("plot.svg");
    let plot_s = plot.to_str().unwrap();
    let mut args = vec![
        "sim", "--nodes", "2,4", "--policy", "all", "--json", "--plot", plot_s,
    ];
    args.extend(SMALL);
    let lines = json_lines(&iolite(&args));
    assert_eq!(lines.len(), 12, "6 policies x 2 node counts");
    let names = ["wrr", "hash", "chash", "chash-bl", "lard", "lard-r"];
    for v in &lines {
        for f in [
            "throughput",
            "vs_wrr",
            "hit_ratio",
            "byte_hit_ratio",
            "max_mean_util",
        ] {
            let x = v[f]
                .as_f64()
                .unwrap_or_else(|| panic!("{f} missing in {v}"));
            assert!(x.is_finite() && x >= 0.0, "{f} = {x}");
        }
        assert!(names.contains(&v["policy"].as_str().unwrap()), "{v}");
        assert!([2, 4].contains(&v["nodes"].as_u64().unwrap()));
        assert_eq!(v["requests"].as_u64(), Some(3000));
        assert!(v["hit_ratio"].as_f64().unwrap() <= 1.0);
        // The cost model goes with every result.
        assert_eq!(v["cost"]["connect_us"].as_f64(), Some(145.0));
        assert_eq!(v["cost"]["transmit_us_per_512b"].as_f64(), Some(40.0));
        if v["policy"] == "wrr" {
            assert_eq!(v["vs_wrr"].as_f64(), Some(1.0));
        }
    }
    let svg = std::fs::read_to_string(&plot).expect("plot written");
    assert!(svg.starts_with("<svg"), "{svg}");
    assert!(svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<polyline").count(), 6);
    for n in names {
        assert!(svg.contains(&format!(">{n}</text>")), "legend lacks {n}");
    }
    let _ = std::fs::remove_file(plot);
}

#[test]
fn table_output_prints_the_cost_model_and_every_policy() {
    let mut args = vec!["sim", "--nodes", "2", "--policy", "lard-r,chash-bl"];
    args.extend(SMALL);
    let out = iolite(&args);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cost model (LARD paper"), "{text}");
    assert!(text.contains("145 us connect"));
    for p in ["lard-r", "chash-bl"] {
        assert!(
            text.lines().any(|l| l.starts_with(p)),
            "{p} missing:\n{text}"
        );
    }
    // WRR ran as the baseline but was not asked for.
    assert!(!text.lines().any(|l| l.starts_with("wrr ")), "{text}");
}

#[test]
fn traces_in_both_formats_and_scenarios() {
    let trace = scratch("trace.log");
    let mut text = String::new();
    for i in 0..300u32 {
        let obj = (i * 7919) % 37;
        if i % 2 == 0 {
            text.push_str(&format!("/f/{obj} {}\n", 1000 + obj * 100));
        } else {
            text.push_str(&format!(
                "10.0.0.1 - - [27/Nov/2026:05:00:00 +0000] \"GET /f/{obj} HTTP/1.1\" 200 {}\n",
                1000 + obj * 100
            ));
        }
    }
    std::fs::write(&trace, text).unwrap();
    let t = trace.to_str().unwrap();
    let lines = json_lines(&iolite(&[
        "sim",
        "--trace",
        t,
        "--nodes",
        "3",
        "--policy",
        "lard-r,chash",
        "--requests",
        "2000",
        "--warmup",
        "300",
        "--scenario",
        "leave",
        "--json",
    ]));
    assert_eq!(lines.len(), 2);
    for v in &lines {
        let s = &v["scenario"];
        assert_eq!(s["scenario"], "leave", "{v}");
        assert!(s["hit_ratio_before"].as_f64().unwrap() > 0.5, "{v}");
        assert!(s["targets_compared"].as_u64().unwrap() > 0);
        assert!(
            v["workload"].as_str().unwrap().contains("37 objects"),
            "{v}"
        );
    }
    let _ = std::fs::remove_file(trace);
}

#[test]
fn bad_input_is_an_error_naming_the_problem() {
    let trace = scratch("bad.log");
    std::fs::write(&trace, "/a 10\n/b 20\n/c lots\n").unwrap();
    let t = trace.to_str().unwrap();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["sim", "--trace", t],
            format!("{t}:3: size `lots` is not a number of bytes"),
        ),
        (
            vec!["sim", "--trace", "/nonexistent/trace"],
            "/nonexistent/trace".into(),
        ),
        (
            vec!["sim", "--policy", "magic"],
            "unknown policy `magic`".into(),
        ),
        (vec!["sim", "--nodes", "0"], "--nodes: 0 is outside".into()),
        (
            vec!["sim", "--nodes", "1", "--scenario", "leave"],
            "at least 2 nodes".into(),
        ),
        (
            vec!["sim", "--cache-size", "12Q"],
            "unknown size suffix".into(),
        ),
        (vec!["sim", "--alpha=-1"], "--alpha must be".into()),
        (vec!["sim", "--k-secs", "1e30"], "--k-secs must be".into()),
        (
            vec!["sim", "--objects", "4000000000"],
            "--objects must be".into(),
        ),
        (
            vec!["sim", "--cpu-connect-us=-3"],
            "every cost must be".into(),
        ),
    ];
    for (args, want) in cases {
        let out = iolite(&args);
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&want), "{args:?}: stderr {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    let _ = std::fs::remove_file(trace);
}
