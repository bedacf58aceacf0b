//! profile.py parity (issue 13): the multi-line output's grammar for every
//! option combination, and the stacks of the 60/30/10 workload compared with
//! what upstream's newest profile.py printed for it (tests/data/upstream).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use crate::common::{profile, require_bpf};

/// tests/workloads/wl.c, built once as upstream's captures built it.
fn wl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workloads/wl.c");
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("wl");
        crate::common::clang(&src, &out, &["-O0", "-fno-omit-frame-pointer"]);
        out
    })
}

struct Wl {
    child: Child,
    pid: u32,
}

impl Wl {
    fn start(secs: u32) -> Wl {
        let mut child = Command::new(wl_bin())
            .arg(secs.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let pid = line.trim().strip_prefix("pid=").unwrap().parse().unwrap();
        Wl { child, pid }
    }
}

impl Drop for Wl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What each line of the multi-line output may be, in order: the header,
/// one blank line, then records of frames (`--` between kernel and user
/// with -d), the comm line, the count line and a blank line.
fn check_grammar(text: &str, header: &str, addresses: bool, names_only: bool) {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(header), "{text}");
    assert_eq!(
        lines.next(),
        Some(""),
        "no blank line after the header:\n{text}"
    );
    #[derive(PartialEq, Debug)]
    enum At {
        Frames,
        Count,
        Blank,
    }
    let mut at = At::Frames;
    let mut records = 0;
    for l in lines {
        match at {
            At::Frames => {
                if let Some(rest) = l.strip_prefix("    -                ") {
                    let (comm, pid) = rest.rsplit_once(" (").expect(l);
                    assert!(!comm.is_empty(), "{l}");
                    assert!(
                        pid.strip_suffix(')').expect(l).parse::<u32>().is_ok(),
                        "{l}"
                    );
                    at = At::Count;
                    continue;
                }
                let f = l
                    .strip_prefix("    ")
                    .unwrap_or_else(|| panic!("bad line {l:?}"));
                if f == "--" || f == "[Missed User Stack]" || f == "[Missed Kernel Stack]" {
                    continue;
                }
                let f = if addresses {
                    let (addr, rest) = f.split_at(19.min(f.len()));
                    assert!(addr.starts_with("0x") && addr.ends_with(' '), "{l}");
                    assert!(
                        u64::from_str_radix(addr[2..].trim(), 16).is_ok(),
                        "address in {l:?}"
                    );
                    rest
                } else {
                    f
                };
                assert!(!f.is_empty() && !f.starts_with(' '), "{l:?}");
                if names_only {
                    assert!(!f.contains("+0x"), "{l:?}");
                } else if f != "[unknown]" && !f.starts_with("[unknown] [") {
                    // sym+0xoff [module]
                    let (sym, module) = f.rsplit_once(" [").expect(l);
                    assert!(module.ends_with(']'), "{l:?}");
                    let (_, off) = sym.rsplit_once("+0x").expect(l);
                    assert!(u64::from_str_radix(off, 16).is_ok(), "{l:?}");
                }
            }
            At::Count => {
                let n = l.strip_prefix("        ").expect(l);
                assert!(n.parse::<u64>().is_ok_and(|n| n > 0), "{l:?}");
                records += 1;
                at = At::Blank;
            }
            At::Blank => {
                assert_eq!(l, "", "{text}");
                at = At::Frames;
            }
        }
    }
    assert_eq!(at, At::Frames, "the output ends mid-record:\n{text}");
    assert!(records > 0, "{text}");
}

#[test]
fn every_option_combination_prints_profile_py_lines() {
    require_bpf!();
    let wl = Wl::start(60);
    let pid = wl.pid.to_string();
    // On CPU 0, so that -C 0 sees it.
    let st = Command::new("taskset")
        .args(["-cp", "0", &pid])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    let h = |rest: &str| format!("Sampling at 199 Hertz of PID [{pid}] by {rest}");
    for (args, header, addresses, names_only) in [
        (vec![], h("user + kernel stack for 1 secs."), false, false),
        (
            vec!["-d"],
            h("user + kernel stack for 1 secs."),
            false,
            false,
        ),
        (
            vec!["-d", "-a"],
            h("user + kernel stack for 1 secs."),
            false,
            false,
        ),
        (
            vec!["-A"],
            h("user + kernel stack for 1 secs."),
            true,
            false,
        ),
        (
            vec!["-A", "-d"],
            h("user + kernel stack for 1 secs."),
            true,
            false,
        ),
        (vec!["-U"], h("user stack for 1 secs."), false, false),
        (
            vec!["-K", "-I"],
            h("kernel stack for 1 secs."),
            false,
            false,
        ),
        (
            vec!["--bcc-0.26", "-d", "-a"],
            h("user + kernel stack for 1 secs."),
            false,
            true,
        ),
        (
            vec!["-C", "0"],
            h("user + kernel stack on CPU#0 for 1 secs."),
            false,
            false,
        ),
    ] {
        let mut all = vec!["-F", "199", "-p", &pid];
        all.extend(&args);
        all.push("1");
        let out = profile(&all);
        assert!(out.status.success(), "{all:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        check_grammar(&text, &header, addresses, names_only);
        if args.contains(&"-a") && !names_only {
            assert!(!text.contains("_[k]"), "upstream ignores -a here:\n{text}");
        }
    }
    // The other header variants.
    let tid = pid.clone();
    let out = profile(&["-c", "10000000", "-L", &tid, "1"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!(
            "Sampling at every 10000000 events of TID [{tid}] by user + kernel stack for 1 secs.\n\n"
        )),
        "{text}"
    );
    let out = profile(&[
        "-p",
        &format!("{pid},{pid}"),
        "-F",
        "0",
        "99999999",
        "--ebpf",
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(&format!(
            "Sampling at 49 Hertz of PID [{pid}, {pid}] by user + kernel stack... Hit Ctrl-C to end.\n"
        )),
        "{text}"
    );
    assert!(text.contains("\t.filter_tgid = 1,"), "{text}");
    let out = profile(&["--ebpf", "-p", "abc"]);
    assert!(!out.status.success());
}

/// A record's frames with offsets and pids replaced, and its count.
fn records(text: &str) -> Vec<(Vec<String>, u64)> {
    let mut out = Vec::new();
    let mut frames = Vec::new();
    for l in text.lines().skip(2) {
        if let Some(n) = l.strip_prefix("        ") {
            out.push((std::mem::take(&mut frames), n.parse().unwrap()));
        } else if l.starts_with("    -      ") {
            let comm = l.trim_start_matches("    -").trim();
            let comm = comm.rsplit_once(" (").unwrap().0;
            frames.push(format!("- {comm} (PID)"));
        } else if let Some(f) = l.strip_prefix("    ") {
            // `burn+0x3d [wl]` -> `burn+0xOFF [wl]`
            let f = match f.find("+0x") {
                Some(i) => {
                    let rest = &f[i + 3..];
                    let module = rest.find(' ').map_or("", |j| &rest[j..]);
                    format!("{}+0xOFF{module}", &f[..i])
                }
                None => f.to_string(),
            };
            frames.push(f);
        }
    }
    out
}

/// Share of samples per normalized stack.
fn shares(text: &str) -> BTreeMap<Vec<String>, f64> {
    let recs = records(text);
    let total: u64 = recs.iter().map(|(_, n)| n).sum();
    let mut m: BTreeMap<Vec<String>, f64> = BTreeMap::new();
    for (frames, n) in recs {
        *m.entry(frames).or_default() += n as f64 / total as f64;
    }
    m
}

/// Upstream walks user stacks by frame pointers (bcc's `bpf_get_stackid`):
/// in libc, which has none, its stacks end at `__libc_start_call_main`.
/// `--unwind fp` is that walk, so it must print exactly what upstream
/// printed; the default (`auto`) walks libc with its CFI and goes on to
/// `_start`: the same stacks, continued towards the root.
#[test]
fn the_workload_prints_what_upstream_printed() {
    require_bpf!();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/upstream");
    for (file, extra) in [("p_default.txt", None), ("p_delim.txt", Some("-d"))] {
        let upstream = std::fs::read_to_string(data.join(file)).unwrap();
        let wl = Wl::start(10);
        let pid = wl.pid.to_string();
        let mut args = vec!["-p", pid.as_str(), "--unwind", "fp"];
        args.extend(extra);
        args.push("3");
        let out = profile(&args);
        assert!(out.status.success());
        let ours = String::from_utf8(out.stdout).unwrap();
        // The header and the blank line, pid aside.
        let head = |t: &str| {
            t.lines()
                .take(2)
                .map(|l| l.split(" of PID [").next().unwrap().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(head(&ours), head(&upstream));
        let (u, o) = (shares(&upstream), shares(&ours));
        let big = |m: &BTreeMap<Vec<String>, f64>| -> BTreeSet<Vec<String>> {
            m.iter()
                .filter(|(_, s)| **s >= 0.05)
                .map(|(k, _)| k.clone())
                .collect()
        };
        // Upstream's captures hold 42 and 51 samples: their shares are
        // noise, their stacks are not. Every stack upstream printed is in
        // ours, named the same, and every stack of ours above 5% is one
        // upstream printed.
        for k in u.keys() {
            assert!(o.contains_key(k), "{file}: {k:?} missing\nours:\n{ours}");
        }
        for k in big(&o) {
            assert!(u.contains_key(&k), "{file}: {k:?} not in upstream's");
        }
        // And ours follow the workload's design, 60/30/10.
        for (leaf, want) in [("leaf_sixty", 0.6), ("leaf_thirty", 0.3), ("leaf_ten", 0.1)] {
            let got: f64 = o
                .iter()
                .filter(|(k, _)| k.iter().any(|f| f.starts_with(leaf)))
                .map(|(_, s)| s)
                .sum();
            assert!((got - want).abs() < 0.12, "{file}: {leaf} {got}");
        }
    }
}

#[test]
fn by_default_the_same_stacks_continue_to_start() {
    require_bpf!();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/upstream");
    let upstream = std::fs::read_to_string(data.join("p_default.txt")).unwrap();
    let wl = Wl::start(10);
    let out = profile(&["-p", &wl.pid.to_string(), "3"]);
    assert!(out.status.success());
    let ours = String::from_utf8(out.stdout).unwrap();
    let o = shares(&ours);
    let libc_start = "__libc_start_call_main+0xOFF [libc.so.6]";
    for k in shares(&upstream).keys() {
        // Upstream's user stack ends at libc's start; ours goes on to _start.
        let Some(cut) = k.iter().position(|f| f == libc_start) else {
            continue;
        };
        let found = o.keys().any(|mine| {
            mine.len() > cut + 2
                && mine[..=cut] == k[..=cut]
                && mine[cut + 1].starts_with("__libc_start_main")
                && mine[cut + 2].starts_with("_start+")
        });
        assert!(found, "{k:?} not continued to _start in\n{ours}");
    }
}
