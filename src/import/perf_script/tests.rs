//! perf script cases: the quirks of real captures (issue 14), each as perf
//! prints it.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn read(text: &str, opts: Options) -> Result<(Vec<Profile>, Summary)> {
    let mut out = Vec::new();
    let mut emit = |p: Profile| -> Result<()> {
        out.push(p);
        Ok(())
    };
    let mut r = PerfScriptReader::new(
        opts,
        Duration::from_millis(500),
        0,
        Duration::ZERO,
        &mut emit,
    )?;
    for l in text.lines() {
        r.line(l)?;
    }
    let s = r.finish()?;
    Ok((out, s))
}

/// Folded-like lines of every interval: `comm;root..leaf count`.
fn lines(ps: &[Profile]) -> Vec<String> {
    let mut v: Vec<String> = ps
        .iter()
        .flat_map(|p| p.counts.iter())
        .map(|(k, n)| {
            let mut f: Vec<String> = vec![k.comm.clone()];
            f.extend(k.user.display_names().into_iter().rev());
            f.extend(k.kernel.display_names().into_iter().rev());
            format!("{} {n}", f.join(";"))
        })
        .collect();
    v.sort();
    v
}

const SCRIPT: &str = "\
workload 4242 [001] 100.000100:   10101010 cpu-clock:ppp: 
\t    55d1c0001139 alpha+0x19 (/tmp/workload)
\t    55d1c00011f0 driver+0x40 (/tmp/workload)
\t    55d1c0001050 main+0x20 (/tmp/workload)

my worker 4243/4250 [000] 100.600000:   10101010 cpu-clock:ppp: 
\tffffffff8a0c1234 do_syscall_64+0x56 ([kernel.kallsyms])
\t    7f0000001000 [unknown] ([unknown])

workload 4242 [001] 101.200000:   10101010 cpu-clock:ppp: 
\t    55d1c0001180 beta+0x9 (/tmp/workload)
";

#[test]
fn samples_into_intervals() {
    let (ps, s) = read(SCRIPT, Options::default()).unwrap();
    assert_eq!(ps.len(), 3);
    assert_eq!(s.samples, 3);
    assert_eq!(s.event.as_deref(), Some("cpu-clock"));
    let (k, _) = ps[0].counts.iter().next().unwrap();
    assert_eq!(k.comm, "workload");
    assert_eq!(k.pid, 4242);
    assert_eq!(k.user.names(), ["alpha", "driver", "main"]);
    let Stack::Frames(f) = &k.user else { panic!() };
    assert_eq!(f[0].info().module.as_deref(), Some("workload"));
    assert_eq!(f[0].info().offset, Some(0x19));
    assert_eq!(f[0].info().addr, Some(0x55d1c0001139));
    let (k, _) = ps[1].counts.iter().next().unwrap();
    assert_eq!(k.comm, "my worker");
    assert_eq!(k.pid, 4243);
    assert_eq!(k.kernel.names(), ["do_syscall_64"]);
    assert_eq!(k.user.names(), ["[unknown]"]);
    assert_eq!(ps[2].start, Duration::from_secs(1));
    assert_eq!(ps[2].loss.taken, 1);
}

#[test]
fn padded_event_lines_without_callchains() {
    // As `perf record` without -g prints them: comm right-aligned, one line
    // per sample, no blank lines.
    let text = "\
        workload  9013  2438.889124:    2004008 cpu-clock:ppp:      564689a922de beta+0x3e (/work/workload)
        workload  9013  2438.891123:    2004008 cpu-clock:ppp:      564689a9222a alpha+0x3a (/work/workload)
              dd   300  2438.891200:    2004008 cpu-clock:ppp:  ffffffff8a0c1234 read_zero+0x7f ([kernel.kallsyms])
";
    let (ps, s) = read(text, Options::default()).unwrap();
    assert_eq!(s.samples, 3);
    assert_eq!(
        lines(&ps),
        ["dd;read_zero 1", "workload;alpha 1", "workload;beta 1"]
    );
}

#[test]
fn tasks_without_comm_are_kept() {
    let text = "\
:-1    -1 [000]  5.000000:   10101010 cpu-clock:ppp: 
\tffffffff8a0c1234 native_safe_halt+0xe ([kernel.kallsyms])

sh 12 [001]  5.100000:   10101010 cpu-clock:ppp: 
\t    7f0000001000 main+0x1 (/bin/sh)
";
    let (ps, _) = read(text, Options::default()).unwrap();
    assert_eq!(lines(&ps), [":-1;native_safe_halt 1", "sh;main 1"]);
    assert!(ps[0].counts.keys().any(|k| k.pid == 0));
}

#[test]
fn samples_with_no_frames_count_for_their_task() {
    // An empty call chain, and one of pseudo frames only: both count.
    let text = "\
sh 12 [001]  5.100000:   10101010 cpu-clock:ppp: 

sh 12 [001]  5.100100:   10101010 cpu-clock:ppp: 
\t    7f0000001000 (anonymous-helper) (/bin/sh)

sh 12 [001]  5.100200:   10101010 cpu-clock:ppp: 
\t    7f0000001000 main+0x1 (/bin/sh)
";
    let (ps, s) = read(text, Options::default()).unwrap();
    assert_eq!(s.samples, 3);
    assert_eq!(lines(&ps), ["sh 2", "sh;main 1"]);
}

#[test]
fn captures_without_callchains() {
    let text = "\
dd 300 [000] 1.000000:   10101010 cpu-clock:ppp:  ffffffff8a0c1234 read_zero+0x7f ([kernel.kallsyms])
dd 300 [000] 1.010000:   10101010 cpu-clock:ppp:      7f0000001000 __read+0xd (/usr/lib/x86_64-linux-gnu/libc.so.6)
false 64414 20110.539270:      34467 cycles:u:  ffffffff9aa3c8de [unknown] ([unknown])
";
    let (ps, s) = read(text, Options::default()).unwrap();
    assert_eq!(lines(&ps), ["dd;__read 1", "dd;read_zero 1"]);
    assert_eq!(s.other_events, 1);
    assert_eq!(s.other_event_names, ["cycles"]);
}

#[test]
fn the_first_event_unless_told() {
    let text = "\
a 1 [000] 1.000000:   100 cycles: 
\t    1000 f (/x)

a 1 [000] 1.000001:   7 instructions: 
\t    1000 g (/x)
";
    let (ps, s) = read(text, Options::default()).unwrap();
    assert_eq!(lines(&ps), ["a;f 1"]);
    assert_eq!((s.other_events, s.event.as_deref()), (1, Some("cycles")));
    let opts = Options {
        event_filter: Some("instructions".into()),
        weight: Weight::Period,
    };
    let (ps, _) = read(text, opts).unwrap();
    assert_eq!(lines(&ps), ["a;g 7"]);
}

#[test]
fn unknown_deleted_srcline_and_tidying() {
    let text = "\
app 9 [000] 2.000000:   1 cpu-clock: 
\t    7f0000001000 [unknown] (/usr/lib/liblzma.so.5.4.1)
\t    5500000010 [unknown] (/tmp/del_cpp (deleted))
\t    5500000020 ns::Widget::run(int, char const*)+0x10 (/tmp/del_cpp (deleted))
  widget.cpp:42
\t    5500000030 go.(*T).M (/tmp/del_cpp (deleted))
\t    5500000040 (anonymous namespace)::helper(std::vector<int>) (/tmp/x)
\t    5500000050 weird;name (/tmp/x)
";
    let (ps, _) = read(text, Options::default()).unwrap();
    assert_eq!(
        lines(&ps),
        ["app;weird:name;(anonymous namespace)::helper;go.(*T).M;ns::Widget::run;[del_cpp];[liblzma.so.5.4.1] 1"]
    );
    let (k, _) = ps[0].counts.iter().next().unwrap();
    let Stack::Frames(f) = &k.user else { panic!() };
    assert_eq!(f[1].info().module.as_deref(), Some("del_cpp"));
}

#[test]
fn untimed_captures_are_one_interval() {
    let text = "\
a 1 cpu-clock: 
\t    1000 f (/x)

a 1 cpu-clock: 
\t    1000 g (/x)
";
    let (ps, s) = read(text, Options::default()).unwrap();
    assert_eq!(ps.len(), 1);
    assert_eq!(s.untimed, 2);
    assert_eq!(lines(&ps), ["a;f 1", "a;g 1"]);
}

#[test]
fn event_lines() {
    for (line, comm, pid, time, period, event) in [
        (
            "java 25607 4794564.109216: cycles:",
            "java",
            25607,
            Some(4794564.109216),
            None,
            "cycles",
        ),
        (
            "java 12688 [002] 6544038.708352: cpu-clock:",
            "java",
            12688,
            Some(6544038.708352),
            None,
            "cpu-clock",
        ),
        (
            "V8 WorkerThread 24636/25607 [000] 94564.109216: cycles:",
            "V8 WorkerThread",
            24636,
            Some(94564.109216),
            None,
            "cycles",
        ),
        (
            "vote   913    72.176760:     257597 cycles:uppp:",
            "vote",
            913,
            Some(72.17676),
            Some(257597),
            "cycles",
        ),
        (
            ":-1    -1 [000]  5.000000:   10101010 cpu-clock:ppp: ",
            ":-1",
            0,
            Some(5.0),
            Some(10101010),
            "cpu-clock",
        ),
    ] {
        let h = parse_event_line(line).unwrap_or_else(|| panic!("{line}"));
        assert_eq!(
            (h.comm.as_str(), h.pid, h.time, h.period, h.event),
            (comm, pid, time, period, event),
            "{line}"
        );
    }
    assert!(parse_event_line("hello").is_none());
    assert!(read("hello\n\tworld", Options::default()).is_err());
}

proptest! {
    /// Any text: an error or profiles, never a panic.
    #[test]
    fn never_panics(text in "(([a-z:-]{0,6} ){0,3}(-?[0-9]{1,4}(/[0-9]{1,3})? )?(\\[[0-9]{3}\\] )?([0-9]{1,4}\\.[0-9]{1,6}: )?([0-9]{1,6} )?([a-z-]{1,9}:[a-z]{0,3}:?)?\n(\t[0-9a-f]{0,12} [\\[\\]a-z+0-9x();]{0,16}( \\([^\n]{0,12}\\))?\n){0,3}\n?){0,6}") {
        let _ = read(&text, Options::default());
    }

    #[test]
    fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = read(&text, Options::default());
    }
}
