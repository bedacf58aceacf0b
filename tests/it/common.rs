//! Shared helpers for the end-to-end tests: the BPF gate, the workload, and
//! running the real `profile` binary.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Whether BPF tests can run here (root and a kernel with BTF). When they
/// can't, they skip, unless RS_PROFILE_REQUIRE_BPF (set by .ci/run) or
/// CI=true makes a skip a failure, so CI never goes green untested.
pub fn bpf_available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    if root && btf {
        return true;
    }
    let why = if root { "no kernel BTF" } else { "not root" };
    let required = std::env::var_os("RS_PROFILE_REQUIRE_BPF").is_some()
        || std::env::var("CI").is_ok_and(|v| v == "true");
    if required {
        panic!("BPF unavailable ({why}) but RS_PROFILE_REQUIRE_BPF or CI=true requires it");
    }
    eprintln!("BPF unavailable ({why}), skipping");
    false
}

/// Skips the test (or fails it, see [`bpf_available`]) when BPF can't run,
/// and serializes BPF tests: whole-system tests must not see each other.
macro_rules! require_bpf {
    () => {
        if !$crate::common::bpf_available() {
            return;
        }
        let _guard = $crate::common::serial();
    };
}
pub(crate) use require_bpf;

pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds C file `src` into `out` with clang and `flags`.
pub fn clang(src: &Path, out: &Path, flags: &[&str]) {
    let status = Command::new("clang")
        .args(flags)
        .arg("-o")
        .arg(out)
        .arg(src)
        .status()
        .expect("clang is needed to build the test programs");
    assert!(status.success(), "failed to build {}", src.display());
}

/// The workload (tests/workloads/workload.c) built once with clang.
pub fn workload_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/workload.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("workload");
        clang(&src, &out, &["-O2", "-fno-omit-frame-pointer", "-pthread"]);
        out
    })
}

/// A running workload; killed when dropped.
pub struct Workload {
    child: Child,
    pub pid: u32,
    pub tid: u32,
}

impl Workload {
    /// Starts `workload MODE SECONDS`, optionally behind a wrapper command
    /// (taskset, unshare), and waits for its "pid=P tid=T" line.
    pub fn start(mode: &str, seconds: f64, wrapper: &[&str]) -> Workload {
        let mut cmd = match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(workload_bin());
                c
            }
            None => Command::new(workload_bin()),
        };
        let mut child = cmd
            .args([mode, &seconds.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("failed to start the workload");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let field = |name: &str| -> u32 {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .unwrap_or_else(|| panic!("workload said {line:?}"))
                .parse()
                .unwrap()
        };
        Workload {
            pid: field("pid="),
            tid: field("tid="),
            child,
        }
    }

    /// Waits for the workload to end by itself.
    pub fn wait(&mut self) {
        let _ = self.child.wait();
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `PROGRAM` as nobody with no capabilities (util-linux's setpriv): what an
/// unprivileged local user runs.
pub fn as_nobody(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
    ])
    .arg(program);
    c
}

/// Runs `profile ARGS` to completion.
pub fn profile(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(args)
        .output()
        .expect("failed to run profile")
}

/// Runs `profile ARGS`, asserts success, returns stdout.
pub fn profile_ok(args: &[&str]) -> String {
    let out = profile(args);
    assert!(
        out.status.success(),
        "profile {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Parses folded lines into (stack, count), checking every line's shape.
pub fn folded(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .map(|l| {
            let (stack, n) = l
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("bad line {l:?}"));
            (
                stack.to_string(),
                n.parse().unwrap_or_else(|_| panic!("bad count in {l:?}")),
            )
        })
        .collect()
}

/// Samples per leaf function for one comm.
pub fn leaf_counts(lines: &[(String, u64)], comm: &str) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for (stack, n) in lines {
        let mut frames = stack.split(';');
        if frames.next() != Some(comm) {
            continue;
        }
        let leaf = stack.rsplit(';').next().unwrap().to_string();
        *m.entry(leaf).or_insert(0) += n;
    }
    m
}

/// Parses the `--stats` line on stderr into (name, value) pairs.
pub fn stats(stderr: &str) -> HashMap<String, u64> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("stats: "))
        .unwrap_or_else(|| panic!("no stats line in {stderr:?}"));
    let words: Vec<&str> = line.split([',', '(', ')', ':']).collect();
    let mut m = HashMap::new();
    for w in words {
        let w = w.trim();
        if let Some((name, value)) = w.rsplit_once(' ') {
            if let Ok(v) = value.parse() {
                m.insert(name.trim().to_string(), v);
            }
        }
    }
    m
}

/// The comm the kernel gives the workload.
pub const COMM: &str = "workload";

/// Runs `cmd` with `input` on its standard input; returns what it printed.
pub fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start");
    let mut stdin = child.stdin.take().unwrap();
    // A writer thread: the child may fill its stdout pipe before it has
    // read all of its input.
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

/// `profile export REC --format FORMAT -o OUT [EXTRA...]`.
pub fn export(rec: &Path, format: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "export",
        rec.to_str().unwrap(),
        "--format",
        format,
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    profile(&args)
}

/// The files in `dir` with extension `ext` (frames: `png`, `svg`), sorted;
/// other files there (the video sidecar) are left out.
pub fn frames_in(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// A PNG file's header and pixels, as stored (RGB or RGBA).
pub fn read_png(path: &Path) -> (png::OutputInfo, Vec<u8>) {
    let file = std::fs::File::open(path).unwrap();
    let mut reader = png::Decoder::new(BufReader::new(file)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info, buf)
}

/// Starts a command that prints `pid=P` first; returns it and P.
pub fn start_printing_pid(cmd: &mut Command) -> (Child, u32) {
    let mut child = cmd.stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    out.read_line(&mut line).unwrap();
    // Keep reading: a closed pipe would kill it (SIGPIPE) on its next write,
    // as wl's own "pid=" line after an exec.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    let pid = line.trim().strip_prefix("pid=").unwrap().parse().unwrap();
    (child, pid)
}
