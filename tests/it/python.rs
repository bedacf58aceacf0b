//! Python frames (issue 27): CPython processes profiled with no help from
//! them (no flags, no restart, no `-X perf`), their Python functions in the
//! stacks in place of the interpreter's C frames: Debian's python3.11 and
//! pyenv's 3.8 to 3.13.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{folded, profile, require_bpf};
use crate::unwind::{start_printing_pid, start_quiet, tmp};

/// The interpreters of this test: Debian's own, and pyenv's where present
/// (required under CI).
fn interpreters() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let debian = PathBuf::from("/usr/bin/python3.11");
    if debian.exists() {
        out.push(("3.11 (Debian)".to_string(), debian));
    }
    for v in ["3.8", "3.9", "3.10", "3.11", "3.12", "3.13"] {
        if let Some(p) = crate::whole_stacks::pyenv_python(v) {
            out.push((v.to_string(), p));
        }
    }
    out
}

fn script(name: &str, text: &str) -> PathBuf {
    let p = tmp(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Profiles `python SCRIPT ARGS` (started before the profiler) for 3 s.
fn run(python: &PathBuf, script: &PathBuf, extra: &[&str]) -> (String, String) {
    let t = start_quiet(Command::new(python).arg(script).arg("8"));
    let pid = t.pid.to_string();
    let mut args = vec!["-p", &pid, "-f", "-F", "499", "--stats"];
    args.extend_from_slice(extra);
    args.push("3");
    let out = profile(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), err)
}

/// Share (%) of the samples whose stack holds `frames` in this order (root
/// to leaf), not necessarily adjacent.
fn share_with(text: &str, frames: &[&str]) -> (u64, f64) {
    let mut total = 0;
    let mut with = 0;
    for (stack, n) in folded(text) {
        total += n;
        let f: Vec<&str> = stack.split(';').collect();
        let mut at = 0;
        if frames
            .iter()
            .all(|want| match f[at..].iter().position(|x| x == want) {
                Some(i) => {
                    at += i + 1;
                    true
                }
                None => false,
            })
        {
            with += n;
        }
    }
    (total, 100.0 * with as f64 / total.max(1) as f64)
}

const NEST: &str = "import sys, time\n\
def leaf(n):\n    s = 0\n    for i in range(n):\n        s += i * i\n    return s\n\
def middle(n):\n    return leaf(n) + 1\n\
def outer(n):\n    return middle(n) + 1\n\
end = time.time() + float(sys.argv[1])\n\
while time.time() < end:\n    outer(20000)\n";

#[test]
fn python_functions_replace_the_interpreter_frames() {
    require_bpf!();
    let nest = script("pynest.py", NEST);
    for (version, python) in interpreters() {
        let (text, err) = run(&python, &nest, &[]);
        let (n, share) = share_with(
            &text,
            &[
                "pynest.<module>",
                "pynest.outer",
                "pynest.middle",
                "pynest.leaf",
            ],
        );
        eprintln!("{version}: {n} samples, {share:.1}% from <module> to leaf");
        assert!(n >= 300, "{version}: {err}");
        assert!(share >= 95.0, "{version}: {share:.1}%\n{text}");
        // The evaluator frames that ran them are gone from those stacks.
        let (_, left) = share_with(&text, &["pynest.leaf", "_PyEval_EvalFrameDefault"]);
        assert!(left < 1.0, "{version}: {text}");
        // Below the Python frames, the interpreter's own C frames remain.
        let (_, native) = share_with(&text, &["Py_BytesMain", "pynest.<module>"]);
        assert!(native >= 95.0, "{version}: {text}");
        // Off: the C frames only.
        let (text, _) = run(&python, &nest, &["--python", "off"]);
        let (_, share) = share_with(&text, &["pynest.leaf"]);
        assert_eq!(share, 0.0, "{version}: --python off still names Python");
    }
}

#[test]
fn c_extension_frames_sit_above_the_python_frame_that_called_them() {
    require_bpf!();
    // json.loads of a large document: the C scanner (_json) runs under
    // json.decoder.JSONDecoder.raw_decode.
    let s = script(
        "pyjson.py",
        "import json, os, sys, time\n\
doc = json.dumps([{'k%d' % i: [i, str(i), {'x': i * 1.5}]} for i in range(20000)])\n\
print('pid=%d' % os.getpid(), flush=True)\n\
def parse():\n    return json.loads(doc)\n\
end = time.time() + float(sys.argv[1])\n\
while time.time() < end:\n    parse()\n",
    );
    for (version, python) in interpreters() {
        let (text, _) = run(&python, &s, &[]);
        // Before 3.11 a code object has no qualified name: co_name stands
        // for it (`json.decoder.decode`).
        let class = if ["3.8", "3.9", "3.10"].contains(&version.as_str()) {
            ""
        } else {
            "JSONDecoder."
        };
        let decode = format!("json.decoder.{class}decode");
        let raw_decode = format!("json.decoder.{class}raw_decode");
        let (n, share) = share_with(&text, &["pyjson.parse", "json.loads", &decode, &raw_decode]);
        eprintln!("{version}: {n} samples, {share:.1}% in raw_decode");
        assert!(share >= 50.0, "{version}: {text}");
        // A C frame of the scanner leafward of raw_decode.
        let c_above = folded(&text).iter().any(|(stack, _)| {
            stack
                .split_once(&format!("{raw_decode};"))
                .is_some_and(|(_, rest)| {
                    // Named where the module has symbols (pyenv's), else by
                    // its file (Debian strips it).
                    rest.split(';')
                        .any(|f| f.contains("scan") || f.starts_with("[_json."))
                })
        });
        assert!(
            c_above,
            "{version}: no scanner frame above raw_decode\n{text}"
        );
    }
}

#[test]
fn each_thread_shows_its_own_python_frames() {
    require_bpf!();
    let s = script(
        "pythreads.py",
        "import sys, threading, time\n\
end = time.time() + float(sys.argv[1])\n\
def spin_a():\n    x = 0\n    while time.time() < end:\n        for i in range(1000):\n            x += i\n\
def spin_b():\n    x = 1\n    while time.time() < end:\n        for i in range(1000):\n            x ^= i\n\
ts = [threading.Thread(target=spin_a, name='a'), threading.Thread(target=spin_b, name='b')]\n\
for t in ts: t.start()\n\
for t in ts: t.join()\n",
    );
    for (version, python) in interpreters() {
        let (text, _) = run(&python, &s, &[]);
        let (n, a) = share_with(&text, &["pythreads.spin_a"]);
        let (_, b) = share_with(&text, &["pythreads.spin_b"]);
        let (_, mixed) = share_with(&text, &["pythreads.spin_a", "pythreads.spin_b"]);
        let (_, mixed2) = share_with(&text, &["pythreads.spin_b", "pythreads.spin_a"]);
        eprintln!("{version}: {n} samples, spin_a {a:.1}%, spin_b {b:.1}%");
        // The GIL lets one run at a time; both get their turn.
        assert!(a >= 15.0 && b >= 15.0, "{version}: {text}");
        assert_eq!(
            mixed + mixed2,
            0.0,
            "{version}: a thread with another's frames"
        );
        // co_name stands for the qualified name before 3.11.
        let bootstrap = if ["3.8", "3.9", "3.10"].contains(&version.as_str()) {
            "threading._bootstrap"
        } else {
            "threading.Thread._bootstrap"
        };
        let (_, threading) = share_with(&text, &[bootstrap, "pythreads.spin_a"]);
        assert!(threading > 0.0, "{version}: {text}");
    }
}

/// py-spy, as scripts/install-deps.sh installs it (from PyPI).
fn py_spy() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/py-spy/bin/py-spy");
    assert!(
        p.exists(),
        "py-spy is needed: scripts/install-deps.sh installs it"
    );
    p
}

/// Inclusive shares (%) of Python functions in py-spy's raw output
/// (`qualname (file:line)` frames), by qualname.
fn py_spy_shares(text: &str) -> (u64, std::collections::HashMap<String, f64>) {
    let mut total = 0;
    let mut inc: std::collections::HashMap<String, u64> = Default::default();
    for (stack, n) in folded(text) {
        total += n;
        let names: std::collections::HashSet<String> = stack
            .split(';')
            // Python frames only: `qualname (file.py:line)`.
            .filter_map(|f| f.rsplit_once(" ("))
            .filter(|(_, at)| at.contains(".py:"))
            .map(|(q, _)| q.to_string())
            .collect();
        for q in names {
            *inc.entry(q).or_default() += n;
        }
    }
    let pct = |n: u64| 100.0 * n as f64 / total.max(1) as f64;
    (total, inc.into_iter().map(|(q, n)| (q, pct(n))).collect())
}

/// Our inclusive share of the frames named `module.qualname`.
fn our_share(text: &str, qualname: &str) -> f64 {
    let suffix = format!(".{qualname}");
    let mut total = 0;
    let mut with = 0;
    for (stack, n) in folded(text) {
        total += n;
        if stack.split(';').any(|f| f.ends_with(&suffix)) {
            with += n;
        }
    }
    100.0 * with as f64 / total.max(1) as f64
}

#[test]
fn python_shares_agree_with_py_spy() {
    require_bpf!();
    let spy = py_spy();
    let s = script(
        "pyspyjson.py",
        "import json, os, sys, time\n\
doc = json.dumps([{'k%d' % i: [i, str(i), {'x': i * 1.5}]} for i in range(20000)])\n\
print('pid=%d' % os.getpid(), flush=True)\n\
def parse():\n    return json.loads(doc)\n\
def shape(v):\n    return len(v)\n\
end = time.time() + float(sys.argv[1])\n\
while time.time() < end:\n    shape(parse())\n",
    );
    for (version, python) in interpreters() {
        // 8 s at 499 Hz: ~4,000 samples each, so that two samplers'
        // noise stays well inside 3 points (a share near 85% differs by
        // 0.8 points, one sigma), also on a loaded machine.
        // Both samplers start once the document is built: its building is
        // in `<module>`, and a sampler that saw more of it would differ by
        // that (CI, loaded, once saw 3 points on 3.8).
        let t = start_printing_pid(Command::new(&python).arg(&s).arg("14"));
        let pid = t.pid.to_string();
        let out_spy = tmp("pyspy.txt");
        // --nonblocking: by default py-spy stops the process for each
        // sample, and at 499 Hz it was stopped over a third of the time
        // (we took 2,500 samples of its CPU where py-spy took 4,000), which
        // moves time between phases (3.8: 2.4 points apart; 3 loops
        // spinning beside it: 4.1). Not stopped, the two agree within a
        // point, loaded or not. Python frames are all that is compared,
        // so py-spy needs no native stacks.
        let spy_run = Command::new(&spy)
            .args([
                "record",
                "--nonblocking",
                "-r",
                "499",
                "-f",
                "raw",
                "-d",
                "8",
                "-p",
                &pid,
                "-o",
            ])
            .arg(&out_spy)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let ours = profile(&["-p", &pid, "-U", "-f", "-F", "499", "8"]);
        let spy_status = spy_run.wait_with_output().unwrap().status;
        assert!(ours.status.success() && spy_status.success(), "{version}");
        let ours = String::from_utf8_lossy(&ours.stdout).into_owned();
        let (n, theirs) = py_spy_shares(&std::fs::read_to_string(&out_spy).unwrap());
        assert!(n >= 300, "{version}: py-spy took {n} samples");
        let mut top: Vec<(&String, &f64)> = theirs.iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(a.1));
        let mut report = String::new();
        for (q, spy_share) in top.into_iter().take(10) {
            let mine = our_share(&ours, q);
            report.push_str(&format!("  {q}: ours {mine:.1}%, py-spy {spy_share:.1}%\n"));
            assert!(
                (mine - spy_share).abs() <= 3.0,
                "{version}: {q} ours {mine:.1}% vs py-spy {spy_share:.1}%\n{report}"
            );
        }
        eprint!("{version}:\n{report}");
    }
}

const ASYNC: &str = "import asyncio, sys, time\n\
def compute(n):\n    s = 0\n    for i in range(n):\n        s += i * i\n    return s\n\
async def work(k):\n    while True:\n        compute(20000 + k)\n        await asyncio.sleep(0)\n\
async def main(secs):\n    tasks = [asyncio.create_task(work(k)) for k in range(3)]\n    await asyncio.sleep(secs)\n    for t in tasks:\n        t.cancel()\n\
asyncio.run(main(float(sys.argv[1])))\n";

#[test]
fn asyncio_tasks_show_their_coroutines_as_py_spy_does() {
    require_bpf!();
    let spy = py_spy();
    let s = script("pyasync.py", ASYNC);
    for (version, python) in interpreters() {
        let t = start_quiet(Command::new(&python).arg(&s).arg("12"));
        let pid = t.pid.to_string();
        let out_spy = tmp("pyspy-async.txt");
        let spy_run = Command::new(&spy)
            // Not stopping the process, as in the test above.
            .args([
                "record",
                "--nonblocking",
                "-r",
                "250",
                "-f",
                "raw",
                "-d",
                "4",
                "-p",
                &pid,
                "-o",
            ])
            .arg(&out_spy)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let ours = profile(&["-p", &pid, "-U", "-f", "-F", "250", "4"]);
        assert!(spy_run.wait_with_output().unwrap().status.success());
        let ours = String::from_utf8_lossy(&ours.stdout).into_owned();
        // The coroutine runs under the event loop's handle, the loop under
        // asyncio.run and <module>.
        let (n, share) = share_with(
            &ours,
            &["pyasync.<module>", "pyasync.work", "pyasync.compute"],
        );
        eprintln!("{version}: {n} samples, {share:.1}% in work -> compute");
        assert!(share >= 80.0, "{version}: {ours}");
        let (_, theirs) = py_spy_shares(&std::fs::read_to_string(&out_spy).unwrap());
        for q in ["work", "compute", "<module>"] {
            let mine = our_share(&ours, q);
            let spy_share = theirs.get(q).copied().unwrap_or(0.0);
            // Every sample of this script is under <module> (the truth is
            // 100%); py-spy, reading without stopping the process, misses
            // the root of a few (96.7% in one CI run, under load): ours
            // may only be short of it by the tolerance, not above it.
            let off = if q == "<module>" {
                spy_share - mine
            } else {
                (mine - spy_share).abs()
            };
            assert!(
                off <= 3.0,
                "{version}: {q} ours {mine:.1}% vs py-spy {spy_share:.1}%"
            );
        }
    }
}

#[test]
fn a_python_process_in_its_own_namespaces_is_read_too() {
    require_bpf!();
    // A container's view: its own pid and mount namespaces (the
    // interpreter is found through /proc/PID/map_files, its memory read by
    // host pid).
    let nest = script("pyns.py", &NEST.replace("pynest", "pyns"));
    let t = start_quiet(
        Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--mount",
                "--mount-proc",
                "/usr/bin/python3.11",
            ])
            .arg(&nest)
            .arg("8"),
    );
    // The interpreter is unshare's child.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", t.pid))
        .expect("unshare's children");
    let pid = children
        .split_whitespace()
        .next()
        .expect("a child")
        .to_string();
    let out = profile(&["-p", &pid, "-U", "-f", "-F", "499", "2"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let (n, share) = share_with(
        &text,
        &["pyns.<module>", "pyns.outer", "pyns.middle", "pyns.leaf"],
    );
    eprintln!("in namespaces: {n} samples, {share:.1}% from <module> to leaf");
    assert!(n >= 300 && share >= 95.0, "{text}");
}

#[test]
fn python_started_after_a_whole_system_run_gets_its_frames() {
    require_bpf!();
    let nest = script("pylate.py", &NEST.replace("pynest", "pylate"));
    let prof = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["-U", "-f", "-F", "499", "4"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let _t = start_quiet(Command::new("/usr/bin/python3.11").arg(&nest).arg("6"));
    let out = prof.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let mine: String = folded(&text)
        .into_iter()
        .filter(|(s, _)| s.starts_with("python3.11;"))
        .map(|(s, n)| format!("{s} {n}\n"))
        .collect();
    let (n, share) = share_with(
        &mine,
        &[
            "pylate.<module>",
            "pylate.outer",
            "pylate.middle",
            "pylate.leaf",
        ],
    );
    eprintln!("started after: {n} samples, {share:.1}% from <module> to leaf");
    // Its first samples, before its maps were read, have C frames only.
    assert!(n >= 300 && share >= 90.0, "{mine}");
}

#[test]
fn an_interpreter_we_cannot_read_says_so() {
    require_bpf!();
    let Some(python) = crate::whole_stacks::pyenv_python("3.7") else {
        return;
    };
    let nest = script("pyold.py", &NEST.replace("pynest", "pyold"));
    let (text, err) = run(&python, &nest, &[]);
    let (n, named) = share_with(&text, &["[python] Python 3.7 (not read)"]);
    assert!(n >= 300 && named >= 95.0, "{text}");
    let (_, evaluator) = share_with(&text, &["_PyEval_EvalFrameDefault"]);
    assert_eq!(evaluator, 0.0, "{text}");
    let line = err
        .lines()
        .find(|l| l.starts_with("stats: python:"))
        .unwrap_or_else(|| panic!("no python stats line: {err}"));
    assert!(
        line.contains("not read: Python 3.7 is not supported (3.8 to 3.13 are)"),
        "{line}"
    );
}
