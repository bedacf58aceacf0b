//! The process model (issue 10): samples are named from the binary that was
//! mapped when they were taken, across exec, pid reuse and process churn,
//! and a file is symbolized once however many processes map it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::common::{folded, profile, require_bpf};

/// Builds a C file from tests/workloads once, with frame pointers.
fn build(name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/workloads/{name}.c"));
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("proc-{name}"));
    crate::common::clang(&src, &out, &["-O0", "-fno-omit-frame-pointer"]);
    out
}

fn wl() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("wl"))
}

fn exec_after() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build("exec_after"))
}

use crate::common::start_printing_pid as start;

/// Of `comm`'s samples with a user stack (`-U` output; a missed stack is
/// reported as such, not named): the share named correctly (no frame left
/// a bare `[unknown]`, and the stack reaches `main`), and how many there
/// were.
fn named_share(text: &str, comm: &str) -> (f64, u64) {
    let lines = folded(text);
    let mine: Vec<_> = lines
        .iter()
        .filter(|(s, _)| s.split(';').next() == Some(comm) && !s.contains("[Missed User Stack]"))
        .collect();
    let total: u64 = mine.iter().map(|(_, n)| n).sum();
    let named: u64 = mine
        .iter()
        .filter(|(s, _)| s.contains(";main;") && !s.split(';').any(|f| f == "[unknown]"))
        .map(|(_, n)| n)
        .sum();
    (named as f64 / total.max(1) as f64, total)
}

/// Of `comm`'s samples, the share with a bare `[unknown]` frame (no
/// module either).
fn unknown_share(text: &str, comm: &str) -> (f64, u64) {
    let lines = folded(text);
    let mine: Vec<_> = lines
        .iter()
        .filter(|(s, _)| s.split(';').next() == Some(comm))
        .collect();
    let total: u64 = mine.iter().map(|(_, n)| n).sum();
    let unknown: u64 = mine
        .iter()
        .filter(|(s, _)| s.split(';').any(|f| f == "[unknown]"))
        .map(|(_, n)| n)
        .sum();
    (unknown as f64 / total.max(1) as f64, total)
}

#[test]
fn exec_starts_a_new_address_space() {
    require_bpf!();
    // Spins in its own binary for 1.5 s, then execs wl, keeping its pid.
    let (mut child, pid) = start(Command::new(exec_after()).arg("1.5").arg(wl()).arg("3"));
    let out = profile(&["-f", "-U", "-p", &pid.to_string(), "4"]);
    let _ = child.wait();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("proc-exec_after;"),
        "no samples before the exec:\n{text}"
    );
    let (share, n) = named_share(&text, "proc-wl");
    assert!(n > 50, "{n} samples after the exec:\n{text}");
    assert!(
        share >= 0.99,
        "{share} of {n} named after the exec:\n{text}"
    );
}

#[test]
fn a_reused_pid_is_a_new_process() {
    require_bpf!();
    // The first process with the pid: exec_after spinning (it would exec wl
    // after 60 s; it is killed long before).
    let (mut first, pid) = start(Command::new(exec_after()).arg("60").arg("/bin/true"));
    let prof = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["-f", "-U", "-p", &pid.to_string(), "4"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    first.kill().unwrap();
    first.wait().unwrap();
    // The next process gets the same pid: wl.
    let mut second = None;
    for _ in 0..20 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let (child, p) = start(Command::new(wl()).arg("2"));
        if p == pid {
            second = Some(child);
            break;
        }
        let mut c = child;
        let _ = c.kill();
        let _ = c.wait();
    }
    let mut second = second.expect("pid reuse through ns_last_pid");
    let out = prof.wait_with_output().unwrap();
    let _ = second.wait();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("proc-exec_after;"), "{text}");
    let (share, n) = named_share(&text, "proc-wl");
    assert!(n > 20, "{n} samples of the second process:\n{text}");
    // A sample taken in the middle of its exec (already named proc-wl,
    // its user registers still the old image's, or the dynamic linker
    // mid-way) can't reach main: one such in ~60 is allowed.
    assert!(share >= 0.97, "{share} of {n} named:\n{text}");
}

#[test]
fn short_lived_processes_are_named() {
    require_bpf!();
    // About 50 processes a second, each burning ~40 ms in wl.
    let wl = wl().to_path_buf();
    let deadline = Instant::now() + Duration::from_secs(4);
    let spawner = std::thread::spawn(move || {
        let mut n = 0;
        while Instant::now() < deadline {
            let mut c = Command::new(&wl)
                .arg("0.04")
                .stdout(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(20));
            let _ = c.wait();
            n += 1;
        }
        n
    });
    std::thread::sleep(Duration::from_millis(200));
    let out = profile(&["-f", "-F", "199", "3"]);
    let spawned = spawner.join().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(spawned > 50, "{spawned} processes");
    // Their start-up (execve, the dynamic linker) is part of them: it must
    // be named too, or at least keep its module. A frame in no code
    // mapping (`[stack]`, `[heap]` once, now `[unknown]`: a frame-pointer
    // walk through the dynamic linker before the process's tables were
    // loaded) counts as unknown; one sample in ~50 is that first window.
    let (unknown, n) = unknown_share(&text, "proc-wl");
    assert!(n > 100, "{n} samples of short-lived processes:\n{text}");
    assert!(
        !text.contains("[stack]") && !text.contains("[heap]"),
        "{text}"
    );
    assert!(unknown <= 0.02, "{unknown} of {n} [unknown]:\n{text}");
}

/// Runs `profile -f -F 999 --stats 3` while `shell` starts thousands of
/// `true`s; returns its stdout and stderr.
fn beside_a_shell_starting_trues(shell: &str) -> (String, String) {
    let mut churn = Command::new(shell)
        .args([
            "-c",
            "i=0; while [ $i -lt 20000 ]; do /bin/true; i=$((i+1)); done",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let out = profile(&["-f", "-F", "999", "--stats", "3"]);
    let _ = churn.kill();
    let _ = churn.wait();
    assert!(out.status.success());
    (
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The number `--stats` prints just before `label`.
fn stats_count(stats: &str, label: &str) -> u64 {
    stats
        .split(label)
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {label:?} in:\n{stats}"))
}

#[test]
fn processes_gone_before_their_maps_are_read_are_named_from_their_exit() {
    require_bpf!();
    // Thousands of `true`s, each gone a millisecond after it starts: a
    // third and more were gone before user space could read their maps,
    // their user frames left `[unknown]`. Their exits tell the mappings.
    let (text, stats) = beside_a_shell_starting_trues("sh");
    let named_from_exits =
        stats_count(&stats, " processes named from the mappings their exit told");
    assert!(named_from_exits >= 10, "{named_from_exits}:\n{stats}");
    // `true` is named after the first one read: the next ones do not wake
    // the profiler, and most are gone (their exits read) by its next
    // look, so their maps are never read at all.
    let not_made = stats_count(&stats, " not made (the exit came first)");
    assert!(not_made >= 10, "{not_made}:\n{stats}");
    // Samples taken while the process tears itself down (exit) or while
    // the exec that makes it is under way (its user registers still the
    // forked shell's, whose maps are gone) have a user frame no maps can
    // name: left out. Of the others, nearly all are named.
    let lines = folded(&text);
    let running: Vec<_> = lines
        .iter()
        .filter(|(s, _)| {
            s.split(';').next() == Some("true")
                && !s.contains(";do_exit")
                && !s.contains(";bprm_execve")
        })
        .collect();
    let total: u64 = running.iter().map(|(_, n)| n).sum();
    let unknown: u64 = running
        .iter()
        .filter(|(s, _)| s.split(';').any(|f| f == "[unknown]"))
        .map(|(_, n)| n)
        .sum();
    assert!(total > 100, "{total} samples of true:\n{text}");
    assert!(
        unknown * 20 <= total,
        "{unknown} of {total} [unknown]:\n{text}"
    );
}

#[test]
fn an_exec_before_a_late_read_does_not_lend_its_maps_to_the_process_before() {
    require_bpf!();
    // Shells that spin a while, then exec wl: the shell is a named
    // executable, so its maps are read late, by which time its address
    // space may be wl's. Such a read is dropped, never used for the
    // shell's samples.
    let script = format!(
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec {} 0.02",
        wl().display()
    );
    let deadline = Instant::now() + Duration::from_secs(4);
    let spawner = std::thread::spawn(move || {
        while Instant::now() < deadline {
            let _ = Command::new("sh")
                .args(["-c", &script])
                .stdout(Stdio::null())
                .status();
        }
    });
    std::thread::sleep(Duration::from_millis(200));
    let out = profile(&["-f", "-F", "999", "--stats", "3"]);
    spawner.join().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let stats = String::from_utf8(out.stderr).unwrap();
    let replaced = stats_count(
        &stats,
        " not made or not kept (an exec had replaced the address space)",
    );
    assert!(replaced >= 1, "{replaced}:\n{stats}");
    let lines = folded(&text);
    let shell: Vec<_> = lines
        .iter()
        .filter(|(s, _)| s.split(';').next() == Some("sh"))
        .collect();
    assert!(!shell.is_empty(), "no shell samples:\n{text}");
    for (s, _) in &shell {
        assert!(
            !s.split(';')
                .any(|f| ["burn", "leaf_ten", "spin_outer"].contains(&f)),
            "a shell sample named from wl: {s}"
        );
    }
    // And wl, after its exec, is named.
    let (share, n) = named_share(&text, "proc-wl");
    assert!(n > 20, "{n} samples of wl:\n{text}");
    assert!(share >= 0.9, "{share} of {n} named:\n{text}");
}

#[test]
fn a_forked_child_is_named_from_its_parent_until_it_execs() {
    require_bpf!();
    // A shell starting `true`s: each fork runs the shell's code until its
    // exec (and the exec itself is entered from there), and is often gone
    // into `true` before its maps are read. Its parent's maps, which the
    // fork copied, name it.
    let (text, stats) = beside_a_shell_starting_trues("bash");
    let inherited = stats_count(&stats, " forked children from their parent's");
    assert!(inherited >= 10, "{inherited}:\n{stats}");
    let (unknown, n) = unknown_share(&text, "bash");
    assert!(n > 100, "{n} samples of bash:\n{text}");
    assert!(unknown <= 0.05, "{unknown} of {n} [unknown]:\n{text}");
}

#[test]
fn fifty_processes_of_one_binary_symbolize_it_once() {
    require_bpf!();
    // They outlive the run (killed after it): starting the profiler beside
    // fifty busy processes on two CPUs can take seconds.
    let mut kids: Vec<Child> = (0..50)
        .map(|_| {
            Command::new(wl())
                .arg("20")
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let out = profile(&["-f", "-U", "-F", "499", "--stats", "2"]);
    for k in &mut kids {
        let _ = k.kill();
        let _ = k.wait();
    }
    let text = String::from_utf8(out.stdout).unwrap();
    let err = String::from_utf8(out.stderr).unwrap();
    let (share, n) = named_share(&text, "proc-wl");
    assert!(n > 500 && share >= 0.99, "{share} of {n}:\n{text}");
    // stats: symbols: N file offsets looked up in M files, ...
    let line = err
        .lines()
        .find(|l| l.starts_with("stats: symbols: "))
        .unwrap_or_else(|| panic!("{err}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let offsets: u64 = words[2].parse().unwrap();
    // wl's hot code is a handful of offsets (burn's loop, three leaves,
    // spin_outer, main, libc's start): looked up once for all fifty
    // processes, not fifty times. The rest of the system adds some.
    let wl_offsets = 12;
    assert!(
        offsets < 50 * wl_offsets,
        "{offsets} file offsets looked up for 50 processes of one binary: {line}"
    );
}

#[test]
fn unknown_frames_keep_their_module() {
    require_bpf!();
    // wl without its symbol table: its frames have no names, but their file.
    let stripped = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wl_stripped");
    let st = Command::new("strip")
        .arg("-s")
        .arg("-o")
        .arg(&stripped)
        .arg(wl())
        .status()
        .unwrap();
    assert!(st.success());
    let (mut child, pid) = start(Command::new(&stripped).arg("3"));
    let out = profile(&["-f", "-p", &pid.to_string(), "2"]);
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines = folded(&text);
    let total: u64 = lines.iter().map(|(_, n)| n).sum();
    let with_module: u64 = lines
        .iter()
        .filter(|(s, _)| s.contains(";[wl_stripped]"))
        .map(|(_, n)| n)
        .sum();
    assert!(total > 50, "{text}");
    assert!(
        with_module * 100 >= total * 99,
        "{with_module} of {total}:\n{text}"
    );
    assert_eq!(unknown_share(&text, "wl_stripped").0, 0.0, "{text}");
}

#[test]
fn jit_code_compiled_after_the_start_is_named() {
    require_bpf!();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/late_jit.js");
    let Ok(mut cmd) = which_node() else {
        return;
    };
    // node may write an isolate log into its working folder: not the repo's.
    let cwd = tempfile::tempdir().unwrap();
    let (mut child, pid) = start(
        cmd.current_dir(cwd.path())
            .arg("--perf-basic-prof")
            .arg(&script),
    );
    let out = profile(&["-f", "-U", "-p", &pid.to_string(), "4"]);
    let _ = child.wait();
    let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines = folded(&text);
    let late: u64 = lines
        .iter()
        .filter(|(s, _)| s.contains(";JS:*spin_late_fib ") || s.contains(";JS:~spin_late_fib "))
        .map(|(_, n)| n)
        .sum();
    let (unknown, n) = unknown_share(&text, "node");
    assert!(
        late > 40,
        "{late} samples in the late function of {n}:\n{text}"
    );
    assert!(unknown <= 0.02, "{unknown} of {n} [unknown]:\n{text}");
}

/// node, or why not: required where CI requires every check.
fn which_node() -> Result<Command, ()> {
    let found = Command::new("node").arg("--version").output().is_ok();
    let required = std::env::var_os("RS_PROFILE_REQUIRE_BPF").is_some()
        || std::env::var("CI").is_ok_and(|v| v == "true");
    match (found, required) {
        (true, _) => Ok(Command::new("node")),
        (false, true) => panic!("node is required here (scripts/install-deps.sh installs it)"),
        (false, false) => {
            eprintln!("node not found, skipping");
            Err(())
        }
    }
}

#[test]
fn inside_a_pid_namespace_pids_are_the_namespace_s() {
    require_bpf!();
    // The profiler and its target both in a new pid namespace (as in a
    // container): `-p` takes the pid the namespace sees, and prints it.
    let script = format!(
        "{wl} 4 > /dev/null & sleep 0.3; echo target=$!; exec {profile} -U -p $! 2",
        wl = wl().display(),
        profile = env!("CARGO_BIN_EXE_profile"),
    );
    let out = Command::new("unshare")
        .args(["-p", "-f", "--mount-proc", "sh", "-c", &script])
        .output()
        .expect("unshare (util-linux) is needed");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid: u32 = text
        .lines()
        .find_map(|l| l.strip_prefix("target="))
        .unwrap()
        .parse()
        .unwrap();
    assert!(pid < 10, "a pid of the new namespace: {pid}");
    assert!(
        text.contains(&format!("    -                proc-wl ({pid})\n")),
        "{text}"
    );
    assert!(text.contains("    burn+0x"), "{text}");
}

#[test]
fn a_binary_deleted_while_it_runs_is_still_named() {
    require_bpf!();
    // A copy of wl that is deleted (as a rebuild or an upgrade would) after
    // it started: its file is read through /proc/PID/map_files.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("wl_gone");
    std::fs::copy(wl(), &copy).unwrap();
    let (mut child, pid) = start(Command::new(&copy).arg("4"));
    std::fs::remove_file(&copy).unwrap();
    let out = profile(&["-f", "-U", "-p", &pid.to_string(), "2"]);
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8(out.stdout).unwrap();
    let (share, n) = named_share(&text, "wl_gone");
    assert!(n > 50, "{n} samples:\n{text}");
    assert!(share >= 0.99, "{share} of {n} named:\n{text}");
    assert!(text.contains(";burn"), "{text}");
}

/// How many descriptors and mappings of `file` the process `pid` holds.
fn held(pid: u32, file: &str) -> usize {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains(file))
                })
                .count()
        })
        .unwrap_or(0);
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map(|m| m.lines().filter(|l| l.contains(file)).count())
        .unwrap_or(0);
    fds + maps
}

/// A JIT service compiling all the time (issue 25: beside one, a live run
/// reached 12.7 GB as every re-read of its perf map stayed open and
/// mapped): the map is read incrementally, never held open, and functions
/// compiled late in the run are named.
#[test]
fn a_growing_perf_map_is_read_incrementally_and_never_held() {
    require_bpf!();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/jit_churn.js");
    let Ok(mut cmd) = which_node() else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let (mut node, pid) = start(
        cmd.current_dir(cwd.path())
            .arg("--perf-basic-prof")
            .arg(&script)
            .arg("24"),
    );
    let map = format!("perf-{pid}.map");
    let frames = tempfile::tempdir().unwrap();
    let pattern = frames.path().join("f%04d.png");
    let prof = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["-f", "-U", "--stats", "-E", "-g", pattern.to_str().unwrap()])
        .args(["--interval", "0.5", "-p", &pid.to_string(), "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let me = prof.id();
    let mut most = 0;
    let t = Instant::now();
    let mut watched = 0;
    while t.elapsed() < Duration::from_secs(19) {
        most = most.max(held(me, &map));
        watched += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = prof.wait_with_output().unwrap();
    let _ = node.kill();
    let _ = node.wait();
    let _ = std::fs::remove_file(format!("/tmp/{map}"));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(watched > 100);
    assert!(
        most <= 1,
        "the profiler held {most} descriptors or mappings of {map}"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // Which gen_N were named, and how late.
    let gen = |s: &str| -> Option<u32> {
        let at = s.rfind("gen_")?;
        s[at + 4..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let named: Vec<u32> = folded(&text).iter().filter_map(|(s, _)| gen(s)).collect();
    let last = named.iter().copied().max().unwrap_or(0);
    assert!(last >= 150, "the last function named: gen_{last}\n{err}");
    let late = named.iter().filter(|n| **n >= last * 2 / 3).count();
    assert!(
        late >= 20,
        "{late} stacks in functions compiled in the last third\n{err}"
    );
    assert!(err.contains("perf maps:"), "{err}");
}

/// A program built with `work` as its hot function (`n` turns of its loop
/// a call), with a build id.
fn build_with(dir: &Path, work: &str, n: u32) -> PathBuf {
    let src = dir.join(format!("{work}.c"));
    std::fs::write(
        &src,
        format!(
            "#include <stdlib.h>\n#include <time.h>\n\
             static volatile unsigned long sink;\n\
             __attribute__((noinline)) void {work}(void) {{ for (unsigned long i = 0; i < {n}; i++) sink += i; }}\n\
             static double now(void) {{ struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }}\n\
             int main(int argc, char **argv) {{ double end = now() + atof(argv[1]); while (now() < end) {work}(); return 0; }}\n"
        ),
    )
    .unwrap();
    let out = dir.join(work);
    crate::common::clang(
        &src,
        &out,
        &["-O1", "-fno-omit-frame-pointer", "-Wl,--build-id"],
    );
    out
}

/// A program rebuilt in place (its file rewritten: the same inode, other
/// code) while a run goes on: the new build's samples are named from the
/// new build, not from what was cached for the old one's inode.
#[test]
fn a_program_rebuilt_in_place_is_named_from_its_new_build() {
    require_bpf!();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // Names of one length and code of one size: the two builds lay their
    // code out alike (a cache keyed by inode would name the later build's
    // samples `first_build_work`), and their build ids differ.
    let first = build_with(dir.path(), "first_build_work", 100_000);
    let later = build_with(dir.path(), "later_build_work", 100_003);
    let prog = dir.path().join("rebuilt");
    std::fs::copy(&first, &prog).unwrap();
    let inode = |p: &Path| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(p).unwrap());
    let before = inode(&prog);
    let prof = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["-f", "-U", "-F", "199", "--interval", "0.5", "9"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(Command::new(&prog).arg("1.5").status().unwrap().success());
    // Its samples are symbolized before the file changes.
    std::thread::sleep(Duration::from_millis(2000));
    std::fs::copy(&later, &prog).unwrap();
    assert_eq!(inode(&prog), before, "rewritten in place");
    assert!(Command::new(&prog).arg("1.5").status().unwrap().success());
    let out = prof.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let count = |work: &str| -> u64 {
        folded(&text)
            .iter()
            .filter(|(s, _)| s.starts_with("rebuilt;") && s.contains(&format!(";{work}")))
            .map(|(_, n)| n)
            .sum()
    };
    let (a, b) = (count("first_build_work"), count("later_build_work"));
    // 1.5 s each at 199 Hz: ~300 samples each.
    assert!(a >= 100 && b >= 100, "first {a}, later {b}:\n{text}");
    assert!(a * 2 >= b && b * 2 >= a, "first {a}, later {b}:\n{text}");
}
