//! Interop with the tools users already have (issue 14): real `perf script`
//! captures made here, pprof read by `go tool pprof`, speedscope checked
//! against speedscope's own schema, completions and the man page.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::{export, profile, require_bpf, run_with_stdin, Workload, COMM};

/// Whether an external tool is here; where CI requires every check, its
/// absence fails the test instead of skipping it.
fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let required = std::env::var_os("RS_PROFILE_REQUIRE_BPF").is_some()
        || std::env::var("CI").is_ok_and(|v| v == "true");
    if !found {
        assert!(
            !required,
            "{name} is required here (scripts/install-deps.sh installs it)"
        );
        eprintln!("{name} not found, skipping");
    }
    found
}

fn perf_script(dir: &Path, name: &str, record: &[&str]) -> PathBuf {
    let data = dir.join(format!("{name}.data"));
    let st = Command::new("perf")
        .arg("record")
        .args(["-q", "-o"])
        .arg(&data)
        .args(record)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("perf (linux-perf) is needed");
    assert!(st.success(), "perf record {record:?}");
    let out = Command::new("perf")
        .args(["script", "-i"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let script = dir.join(format!("{name}.script"));
    fs::write(&script, &out.stdout).unwrap();
    script
}

/// Event lines of one event in a perf script file (perf pads the comm, so
/// they may be indented too; frame lines never hold ` EVENT:`).
fn event_lines(script: &Path, event: &str) -> u64 {
    fs::read_to_string(script)
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!(" {event}:")))
        .count() as u64
}

/// Which of `events` the first event line of a perf script file is of.
fn first_event<'a>(script: &Path, events: &[&'a str]) -> &'a str {
    let text = fs::read_to_string(script).unwrap();
    text.lines()
        .find_map(|l| events.iter().find(|e| l.contains(&format!(" {e}:"))))
        .copied()
        .expect("no event line")
}

fn import(inputs: &[&Path], out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["import".to_string()];
    args.extend(inputs.iter().map(|p| p.display().to_string()));
    args.extend(["-o".into(), out.display().to_string(), "--overwrite".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    profile(&refs)
}

fn report_folded(rec: &Path) -> String {
    let out = profile(&["report", rec.to_str().unwrap(), "-f"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn total(folded: &str) -> u64 {
    folded
        .lines()
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn real_perf_captures_import_whole() {
    require_bpf!();
    let dir = tempfile::tempdir().unwrap();
    let w = Workload::start("mix", 30.0, &[]);
    let pid = w.pid.to_string();

    // Whole system with call chains: tasks perf has no COMM for and all.
    let all = perf_script(
        dir.path(),
        "all",
        &["-a", "-g", "-F", "499", "--", "sleep", "2"],
    );
    let rec = dir.path().join("all.rsprof");
    let out = import(&[&all], &rec, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let folded = report_folded(&rec);
    assert_eq!(total(&folded), event_lines(&all, "cpu-clock"));
    assert!(folded.contains(&format!("{COMM};")), "{folded}");
    assert!(folded.contains(";alpha "), "{folded}");

    // No call chains: the one frame is on the event line.
    let flat = perf_script(
        dir.path(),
        "flat",
        &["-F", "499", "-p", &pid, "--", "sleep", "1"],
    );
    let out = import(&[&flat], &rec, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let folded = report_folded(&rec);
    let n = event_lines(&flat, "cpu-clock");
    assert!(n > 100, "{n} samples");
    assert_eq!(total(&folded), n);
    let hot: u64 = folded
        .lines()
        .filter(|l| {
            l.starts_with(&format!("{COMM};alpha ")) || l.starts_with(&format!("{COMM};beta "))
        })
        .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
        .sum();
    assert!(hot * 10 >= n * 9, "{folded}");

    // Two events: the first only, and a message saying so.
    let two = perf_script(
        dir.path(),
        "two",
        &[
            "-e",
            "cpu-clock",
            "-e",
            "task-clock",
            "-g",
            "-p",
            &pid,
            "--",
            "sleep",
            "1",
        ],
    );
    // Which of the two perf wrote first depends on timing.
    let (first, other) = match first_event(&two, &["cpu-clock", "task-clock"]) {
        "cpu-clock" => ("cpu-clock", "task-clock"),
        _ => ("task-clock", "cpu-clock"),
    };
    let out = import(&[&two], &rec, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("imported {first} events only")),
        "{err}"
    );
    assert!(err.contains(&format!("samples of {other}")), "{err}");
    assert_eq!(total(&report_folded(&rec)), event_lines(&two, first));
    let out = import(&[&two], &rec, &["--event-filter", other]);
    assert!(out.status.success());
    assert_eq!(total(&report_folded(&rec)), event_lines(&two, other));

    // Standard input, streamed.
    let out = run_with_stdin(
        Command::new(env!("CARGO_BIN_EXE_profile")).args([
            "import",
            "-",
            "-o",
            rec.to_str().unwrap(),
            "--overwrite",
        ]),
        &fs::read(&all).unwrap(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(total(&report_folded(&rec)), event_lines(&all, "cpu-clock"));

    // Exports of a real capture, read by the consumers' own tools.
    exports_read_back(dir.path(), &rec);
}

fn exports_read_back(dir: &Path, rec: &Path) {
    let pb = dir.join("all.pb.gz");
    let out = export(rec, "pprof", &pb, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if tool("go") {
        let pprof = |flag: &str| {
            let out = Command::new("go")
                .args(["tool", "pprof", flag])
                .arg(&pb)
                .env("HOME", dir)
                .env("PPROF_TMPDIR", dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let raw = pprof("-raw");
        assert!(raw.contains("alpha"), "{raw}");
        // Mappings with their files, and locations with addresses.
        assert!(raw.contains("Mappings"), "{raw}");
        assert!(raw.contains("workload"), "{raw}");
        let tags = pprof("-tags");
        for label in ["comm", "pid", "thread"] {
            assert!(tags.contains(label), "{label} missing: {tags}");
        }
        // A label per interval only on request (it multiplies series).
        assert!(!tags.contains("interval_start"), "{tags}");
        let traces = pprof("-traces");
        assert!(traces.contains("alpha"), "{traces}");
        // A real duration: not "0 s".
        let top = pprof("-top");
        assert!(
            !top.contains("Duration: 0,") && top.contains("Duration:"),
            "{top}"
        );
    }
    let ss = dir.join("all.speedscope.json");
    assert!(export(rec, "speedscope", &ss, &[]).status.success());
    if tool("node") {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/validate-speedscope.mjs");
        let out = Command::new("node").arg(&script).arg(&ss).output().unwrap();
        assert!(
            out.status.success(),
            "speedscope schema: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let out = profile(&["completions", shell]);
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("frame-pattern"), "{shell}");
    }
    let out = profile(&["man"]);
    assert!(out.status.success());
    let man = String::from_utf8(out.stdout).unwrap();
    assert!(man.contains(".TH profile 1"), "{man}");
    if tool("man") {
        let out = run_with_stdin(
            Command::new("man")
                .args(["-l", "-"])
                .env("MANPAGER", "cat")
                .env("MANWIDTH", "100"),
            man.as_bytes(),
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("--frequency"), "{text}");
    }
}

/// A live recording of a binary built with -g, exported to pprof: mappings
/// with build ids, ranges and file offsets, and source lines, as
/// `go tool pprof` reads them; and its web UI serves the file.
#[test]
fn live_pprof_has_mappings_build_ids_and_lines() {
    require_bpf!();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("wl_g");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/wl.c");
    crate::common::clang(
        &src,
        &bin,
        &["-g", "-O0", "-fno-omit-frame-pointer", "-Wl,--build-id"],
    );
    let mut child = Command::new(&bin)
        .arg("4")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let rec = dir.path().join("run.rsprof");
    let out = profile(&[
        "record",
        "-o",
        rec.to_str().unwrap(),
        "-p",
        &child.id().to_string(),
        "-U",
        "2",
    ]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pb = dir.path().join("run.pb.gz");
    assert!(export(&rec, "pprof", &pb, &[]).status.success());
    // Decoded here too, so the check runs where go is absent.
    let gz = fs::read(&pb).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gz[..]), &mut raw).unwrap();
    let p = <rs_profile::export::pprof::PprofProfile as prost::Message>::decode(&raw[..]).unwrap();
    let s = |i: i64| p.string_table[i as usize].clone();
    let wl = p
        .mapping
        .iter()
        .find(|m| s(m.filename).ends_with("/wl_g"))
        .expect("a mapping for the binary");
    assert_eq!(s(wl.build_id).len(), 40, "a 20-byte GNU build id");
    assert!(wl.memory_start < wl.memory_limit && wl.has_line_numbers);
    let burn_line = p.location.iter().find_map(|l| {
        let f = &p.function[(l.line[0].function_id - 1) as usize];
        (s(f.name) == "burn").then(|| (s(f.filename), l.line[0].line))
    });
    let (file, line) = burn_line.expect("burn");
    assert!(file.ends_with("wl.c") && line > 0, "{file}:{line}");
    if tool("go") {
        let raw = Command::new("go")
            .args(["tool", "pprof", "-raw"])
            .arg(&pb)
            .env("HOME", dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&raw.stdout);
        assert!(text.contains(&s(wl.build_id)), "{text}");
        assert!(text.contains("wl.c:"), "{text}");
        // The web UI loads the file and serves its pages.
        let port = crate::feed::free_port();
        let mut web = Command::new("go")
            .args(["tool", "pprof", "-no_browser"])
            .arg(format!("-http=127.0.0.1:{port}"))
            .arg(&pb)
            .env("HOME", dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut page = String::new();
        while std::time::Instant::now() < deadline {
            if let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let _ = write!(
                    c,
                    "GET /ui/top HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                );
                let _ = c.read_to_string(&mut page);
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let _ = web.kill();
        let _ = web.wait();
        assert!(
            page.starts_with("HTTP/1.1 200"),
            "{}",
            &page[..page.len().min(300)]
        );
        assert!(page.contains("burn"), "the top page lists burn");
    }
}
