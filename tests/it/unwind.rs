//! Unwinding without frame pointers (issue 11): programs built without frame
//! pointers, and Debian's own binaries, profiled with `--unwind auto` side
//! by side with `perf record --call-graph dwarf` over the same window.
//!
//! For each: at least 95% of the target's samples have a user stack that
//! reaches `main` (or libc's `__libc_start_call_main` where `main` has no
//! symbol), and the inclusive share of each function both name (5% or more
//! in either) agrees with perf's within 3 points (or the sampling noise, [`allowed`]).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::common::{folded, profile, require_bpf, stats, workload_bin};

const NOFP: &[&str] = &[
    "-O2",
    "-fomit-frame-pointer",
    "-fno-inline",
    "-fno-optimize-sibling-calls",
];

fn src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/workloads/nofp")
        .join(name)
}

pub(crate) fn tmp(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn run(cmd: &mut Command) {
    let st = cmd.status().expect("compiler missing");
    assert!(st.success(), "{cmd:?} failed");
}

/// The shared library and every workload, built once without frame
/// pointers (and checked to have none: no `push %rbp; mov %rsp,%rbp`).
pub(crate) fn bins() -> &'static HashMap<&'static str, PathBuf> {
    static BINS: OnceLock<HashMap<&'static str, PathBuf>> = OnceLock::new();
    BINS.get_or_init(|| {
        let lib = tmp("libnofp.so");
        run(Command::new("gcc")
            .args(NOFP)
            .args(["-shared", "-fPIC", "-o"])
            .arg(&lib)
            .arg(src("lib.c")));
        let rpath = format!("-Wl,-rpath,{}", env!("CARGO_TARGET_TMPDIR"));
        let libdir = format!("-L{}", env!("CARGO_TARGET_TMPDIR"));
        let mut m = HashMap::new();
        for (name, compiler, file, extra) in [
            (
                "nofp-c",
                "gcc",
                "main.c",
                vec![libdir.as_str(), "-lnofp", &rpath],
            ),
            (
                "nofp-cxx",
                "g++",
                "main.cpp",
                vec![libdir.as_str(), "-lnofp", &rpath],
            ),
            ("nofp-dlopen", "gcc", "dlopen.c", vec!["-ldl"]),
            ("nofp-recurse", "gcc", "recurse.c", vec![]),
        ] {
            let out = tmp(name);
            run(Command::new(compiler)
                .args(NOFP)
                .arg("-o")
                .arg(&out)
                .arg(src(file))
                .args(extra));
            m.insert(name, out);
        }
        let rs = tmp("nofp-rust");
        run(Command::new("rustc")
            .args(["-C", "opt-level=2", "-C", "force-frame-pointers=no", "-o"])
            .arg(&rs)
            .arg(src("main.rs")));
        m.insert("nofp-rust", rs);
        m.insert("libnofp.so", lib);
        m
    })
}

/// A running target; killed when dropped.
pub(crate) struct Target {
    child: Child,
    pub(crate) pid: u32,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a workload that prints `pid=P` first.
pub(crate) fn start_printing_pid(cmd: &mut Command) -> Target {
    let (child, pid) = crate::common::start_printing_pid(cmd);
    Target { child, pid }
}

/// Starts any command, its output discarded.
pub(crate) fn start_quiet(cmd: &mut Command) -> Target {
    let child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Let it get past its start-up.
    std::thread::sleep(Duration::from_millis(300));
    Target { child, pid }
}

/// Inclusive shares of one process's samples: (samples, function -> share
/// in %, share in % of samples whose stack reaches main).
pub(crate) struct Shares {
    pub(crate) samples: u64,
    pub(crate) inclusive: HashMap<String, f64>,
    pub(crate) reach_main: f64,
}

const ROOTS: &[&str] = &["main", "__libc_start_call_main", "start_thread"];

pub(crate) fn shares(text: &str, comm: &str) -> Shares {
    let mut samples = 0;
    let mut reach = 0;
    let mut inc: HashMap<String, u64> = HashMap::new();
    for (stack, n) in folded(text) {
        let frames: Vec<&str> = stack.split(';').collect();
        if frames[0] != comm {
            continue;
        }
        samples += n;
        if frames.iter().any(|f| ROOTS.contains(f)) {
            reach += n;
        }
        let set: HashSet<&str> = frames[1..].iter().copied().collect();
        for f in set {
            *inc.entry(f.to_string()).or_insert(0) += n;
        }
    }
    let pct = |n: u64| 100.0 * n as f64 / samples.max(1) as f64;
    Shares {
        samples,
        inclusive: inc.into_iter().map(|(f, n)| (f, pct(n))).collect(),
        reach_main: pct(reach),
    }
}

/// Profiles `target` for `secs` with ours and with
/// `perf record --call-graph dwarf` at the same time; returns both.
pub(crate) fn side_by_side(target: &Target, secs: u32, comm: &str) -> (Shares, Shares, String) {
    let pid = target.pid.to_string();
    let data = tmp(&format!("unwind-{comm}.perf.data"));
    let mut perf = Command::new("perf")
        .args([
            "record",
            "-q",
            "-F",
            "999",
            "--call-graph",
            "dwarf",
            "-p",
            &pid,
            "-o",
        ])
        .arg(&data)
        .args(["--", "sleep", &secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("perf is needed (linux-perf)");
    // Native frames, as perf has them: Python frames would replace the
    // interpreter's evaluator frames (tests/it/python.rs).
    let ours = profile(&[
        "-p",
        &pid,
        "-U",
        "-f",
        "-F",
        "999",
        "--python",
        "off",
        "--stats",
        &secs.to_string(),
    ]);
    let stderr = String::from_utf8_lossy(&ours.stderr).into_owned();
    assert!(ours.status.success(), "{stderr}");
    assert!(perf.wait().unwrap().success());

    let theirs = perf_folded(&data, comm);
    (
        shares(&String::from_utf8_lossy(&ours.stdout), comm),
        shares(&theirs, comm),
        stderr,
    )
}

/// perf.data made folded, through `perf script` and our importer (so both
/// sides are named by the same symbolizer rules).
pub(crate) fn perf_folded(data: &Path, name: &str) -> String {
    let script = Command::new("perf")
        .args(["script", "--no-inline", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(script.status.success());
    let rec = tmp(&format!("unwind-{name}.perf.rsprof"));
    let mut import = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["import", "-", "--overwrite", "-o"])
        .arg(&rec)
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    import
        .stdin
        .take()
        .unwrap()
        .write_all(&script.stdout)
        .unwrap();
    assert!(import.wait().unwrap().success());
    let report = profile(&["report", rec.to_str().unwrap(), "-f"]);
    assert!(report.status.success());
    String::from_utf8_lossy(&report.stdout).into_owned()
}

/// The acceptance figures: >= 95% reach main; shares within 3 points, or
/// within what sampling noise allows where that is more (see [`allowed`]).
fn assert_agrees(name: &str, ours: &Shares, perf: &Shares, hot: &[&str], stderr: &str) {
    assert_agrees_on(name, ours, perf, hot, 3, stderr)
}

/// As [`assert_agrees`], with at least `min_compared` functions both name.
pub(crate) fn assert_agrees_on(
    name: &str,
    ours: &Shares,
    perf: &Shares,
    hot: &[&str],
    min_compared: usize,
    stderr: &str,
) {
    eprintln!(
        "{name}: ours {} samples, {:.1}% reach main; perf {} samples, {:.1}%",
        ours.samples, ours.reach_main, perf.samples, perf.reach_main
    );
    assert!(
        ours.samples >= 200,
        "{name}: {} samples\n{stderr}",
        ours.samples
    );
    assert!(
        perf.samples >= 200,
        "{name}: perf took {} samples",
        perf.samples
    );
    assert!(
        ours.reach_main >= 95.0,
        "{name}: only {:.1}% of stacks reach main\n{stderr}",
        ours.reach_main
    );
    let mut compared = 0;
    let mut report = String::new();
    for (f, mine) in &ours.inclusive {
        let Some(theirs) = perf.inclusive.get(f) else {
            continue;
        };
        if *mine < 5.0 && *theirs < 5.0 {
            continue;
        }
        compared += 1;
        let limit = allowed(*mine, ours.samples, *theirs, perf.samples);
        report.push_str(&format!(
            "  {f}: ours {mine:.1}%, perf {theirs:.1}% (within {limit:.1})\n"
        ));
        assert!(
            (mine - theirs).abs() <= limit,
            "{name}: {f} ours {mine:.1}% vs perf {theirs:.1}%, {limit:.1} points allowed\n{report}{stderr}"
        );
    }
    eprint!("{report}");
    for f in hot {
        assert!(
            ours.inclusive.get(*f).copied().unwrap_or(0.0) > 5.0,
            "{name}: {f} missing\n{report}"
        );
    }
    assert!(
        compared >= min_compared,
        "{name}: only {compared} functions compared\n{report}"
    );
}

/// How far two shares (in %) of two independent samplings of one workload
/// may differ: 3 points, or 3.5 standard errors of the difference where
/// that is more. Two profilers sampling the same process on their own timers
/// each draw a binomial sample; at 70% and 2,000 samples a side the standard
/// error of the difference is 1.45 points, so a fixed 3 points failed about
/// one comparison in 25 with both profilers right (CI saw 72.2% vs 67.8%,
/// each run alone agreeing within 2). 3.5 errors fail one in 4,000.
pub(crate) fn allowed(mine: f64, n_mine: u64, theirs: f64, n_theirs: u64) -> f64 {
    let (n1, n2) = (n_mine.max(1) as f64, n_theirs.max(1) as f64);
    let p = (mine * n1 + theirs * n2) / (n1 + n2) / 100.0;
    let se = (p * (1.0 - p) * (1.0 / n1 + 1.0 / n2)).sqrt() * 100.0;
    (3.5 * se).max(3.0)
}

#[test]
fn sampling_noise_widens_the_allowance_only_for_few_samples() {
    // 4,000 samples a side at 70%: 3.5 errors are 3.6 points.
    assert!((allowed(70.0, 4000, 70.0, 4000) - 3.59).abs() < 0.01);
    // Shares near 0 or 100% are tight: the 3-point floor applies.
    assert_eq!(allowed(99.0, 2000, 99.5, 2000), 3.0);
    // The CI failure (72.2% of 1,954 vs 67.8% of 1,991) is within noise.
    assert!(allowed(72.2, 1954, 67.8, 1991) > 4.4);
    // A real bias of 10 points is not.
    assert!(allowed(75.0, 2000, 65.0, 2000) < 10.0);
}

#[test]
fn c_without_frame_pointers_crossing_a_library() {
    require_bpf!();
    let t = start_printing_pid(Command::new(&bins()["nofp-c"]).arg("8"));
    let (ours, perf, err) = side_by_side(&t, 4, "nofp-c");
    assert_agrees(
        "C",
        &ours,
        &perf,
        &[
            "main", "run", "level1", "level2", "lib_warm", "lib_hot", "side",
        ],
        &err,
    );
}

#[test]
fn cxx_without_frame_pointers() {
    require_bpf!();
    let t = start_printing_pid(Command::new(&bins()["nofp-cxx"]).arg("8"));
    let (ours, perf, err) = side_by_side(&t, 4, "nofp-cxx");
    assert_agrees("C++", &ours, &perf, &["main", "lib_hot", "lib_warm"], &err);
}

#[test]
fn rust_release_without_frame_pointers() {
    require_bpf!();
    let t = start_printing_pid(Command::new(&bins()["nofp-rust"]).arg("8"));
    let (ours, perf, err) = side_by_side(&t, 4, "nofp-rust");
    let names: Vec<&String> = ours.inclusive.keys().collect();
    for f in ["inner", "middle", "outer", "run"] {
        assert!(
            names
                .iter()
                .any(|n| n.ends_with(&format!("::{f}")) || **n == f),
            "{f} missing: {names:?}"
        );
    }
    assert_agrees("Rust", &ours, &perf, &["main"], &err);
}

#[test]
fn deep_recursion() {
    require_bpf!();
    let t = start_printing_pid(Command::new(&bins()["nofp-recurse"]).arg("8"));
    let (ours, perf, err) = side_by_side(&t, 4, "nofp-recurse");
    assert_agrees("recursion", &ours, &perf, &["recurse", "leaf", "run"], &err);
}

/// A file of text for the compressors, made by the test.
pub(crate) fn text_file() -> &'static Path {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let p = tmp("unwind-input.txt");
        let mut f = std::io::BufWriter::new(std::fs::File::create(&p).unwrap());
        let mut x: u64 = 88172645463325252;
        for i in 0..3_000_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            writeln!(f, "line {i} value {} word{}", x % 100_000, x % 997).unwrap();
        }
        f.flush().unwrap();
        p
    })
}

#[test]
fn debian_xz() {
    require_bpf!();
    let t = start_quiet(
        Command::new("xz")
            .args(["-9", "-T1", "-c"])
            .arg(text_file()),
    );
    let (ours, perf, err) = side_by_side(&t, 4, "xz");
    assert_agrees("xz", &ours, &perf, &["lzma_code"], &err);
}

#[test]
fn debian_gzip() {
    require_bpf!();
    // gzip -9 of ~100 MB of text takes longer than the window.
    let t = start_quiet(Command::new("gzip").args(["-9", "-c"]).arg(text_file()));
    let (ours, perf, err) = side_by_side(&t, 3, "gzip");
    // Debian's gzip has no symbols of its own (only .dynsym): its functions
    // are all `[gzip]` to both profilers, so only libc's start and the
    // module itself can be compared by name.
    assert_agrees_on("gzip", &ours, &perf, &["__libc_start_call_main"], 2, &err);
}

#[test]
fn debian_python3() {
    require_bpf!();
    let script = "def f(n):\n    s = 0\n    for i in range(n):\n        s += i * i\n    return s\nwhile True:\n    f(100000)\n";
    // Debian's own python3 (stripped, no frame pointers), not one that
    // PATH may find first (pyenv's has DWARF).
    let t = start_quiet(Command::new("/usr/bin/python3").args(["-c", script]));
    let (ours, perf, err) = side_by_side(&t, 4, "python3");
    assert_agrees(
        "python3",
        &ours,
        &perf,
        &["Py_BytesMain", "_PyEval_EvalFrameDefault"],
        &err,
    );
}

#[test]
fn a_library_loaded_after_profiling_started() {
    require_bpf!();
    let lib = &bins()["libnofp.so"];
    // dlopen at 1.5 s, while being profiled from ~0.1 s.
    let t = start_printing_pid(
        Command::new(&bins()["nofp-dlopen"])
            .arg(lib)
            .arg("1.5")
            .arg("8"),
    );
    let out = profile(&[
        "-p",
        &t.pid.to_string(),
        "-U",
        "-f",
        "-F",
        "499",
        "--stats",
        "5",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut in_lib, mut whole) = (0, 0);
    for (stack, n) in folded(&text) {
        if stack.ends_with(";lib_hot") {
            in_lib += n;
            if stack.contains(";main;use_lib;lib_warm;lib_hot") {
                whole += n;
            }
        }
    }
    eprintln!("dlopen: {whole} of {in_lib} samples in lib_hot have the whole stack\n{err}");
    assert!(in_lib >= 500, "{in_lib} samples in the library\n{text}");
    assert!(
        whole as f64 >= 0.95 * in_lib as f64,
        "{whole} of {in_lib} whole\n{text}\n{err}"
    );
    // The walker asked for the maps again when it met the new library.
    let s = stats(&err);
    assert!(s.get("samples taken").copied().unwrap_or(0) > 0);
    assert!(err.contains("crossed unknown code"), "{err}");
}

/// The frame-pointer workload of the other tests gives the same profile
/// under `auto` as under `fp` (both run at once on the same process).
#[test]
fn frame_pointer_programs_agree_under_auto_and_fp() {
    require_bpf!();
    let mut w = Command::new(workload_bin())
        .args(["mix", "12"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(w.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    let pid: String = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("pid="))
        .unwrap()
        .to_string();
    let run = |mode: &'static str| {
        let pid = pid.clone();
        std::thread::spawn(move || {
            // 8 s, ~4,000 samples each: the two samplers take different
            // instants, and under a loaded suite 4 s left a 3-point
            // difference within reach of noise.
            profile(&["-p", &pid, "-U", "-f", "-F", "499", "--unwind", mode, "8"])
        })
    };
    let (a, b) = (run("auto"), run("fp"));
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let _ = w.kill();
    let _ = w.wait();
    assert!(a.status.success() && b.status.success());
    let sa = shares(&String::from_utf8_lossy(&a.stdout), "workload");
    let sb = shares(&String::from_utf8_lossy(&b.stdout), "workload");
    assert!(sa.samples > 500 && sb.samples > 500);
    for (f, x) in &sb.inclusive {
        if *x < 5.0 {
            continue;
        }
        let y = sa.inclusive.get(f).copied().unwrap_or(0.0);
        assert!((x - y).abs() <= 3.0, "{f}: fp {x:.1}% auto {y:.1}%");
    }
    assert!((sa.reach_main - sb.reach_main).abs() <= 3.0);
}

/// A budget too small for LLVM's table (libLLVM has millions of rows):
/// the file is named in a warning and its frames are walked with frame
/// pointers; nothing fails.
#[test]
fn a_table_over_budget_is_named_and_left_to_frame_pointers() {
    require_bpf!();
    let c = tmp("unwind-big.c");
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!(
            "int f{i}(int x) {{ for (int j = 0; j < x; j++) x = x * 3 + j % {n}; return x; }}\n",
            n = i + 7
        ));
    }
    std::fs::write(&c, text).unwrap();
    let obj = tmp("unwind-big.o");
    let script = format!(
        "while :; do clang -O2 -c -o {} {}; done",
        obj.display(),
        c.display()
    );
    let t = start_quiet(Command::new("sh").args(["-c", &script]));
    let out = profile(&["-U", "-f", "--unwind-memory", "1", "--stats", "3"]);
    drop(t);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("profile: warning: the unwind table of /")
                && l.contains("LLVM")
                && l.contains("does not fit in --unwind-memory")),
        "{err}"
    );
    assert!(err.contains(", left out: /"), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.starts_with("clang;")), "{text}");
}
