//! Unit tests of the command line: what each option turns into.
use super::*;
use crate::profile::modes::FrameMode;
use crate::sampler::SampleRate;

fn parse(args: &[&str]) -> Result<RunConfig> {
    let mut v = vec!["profile"];
    v.extend_from_slice(args);
    match Cli::try_parse_from(v)?.into_action()? {
        Action::Run(c) => Ok(*c),
        other => bail!("not a run: {other:?}"),
    }
}

#[test]
fn completions_and_man_page_name_the_options() {
    let mut bash = Vec::new();
    Cli::completions(clap_complete::Shell::Bash, &mut bash);
    let bash = String::from_utf8(bash).unwrap();
    for opt in [
        "--frequency",
        "--frame-pattern",
        "--bcc-0.26",
        "record",
        "import",
    ] {
        assert!(bash.contains(opt), "{opt} missing from bash completions");
    }
    let mut man = Vec::new();
    Cli::man(None, &mut man).unwrap();
    let man = String::from_utf8(man).unwrap();
    assert!(
        man.starts_with(".ie") || man.contains(".TH profile"),
        "{}",
        &man[..200]
    );
    assert!(man.contains("frequency"));
}

#[test]
fn every_page_the_man_page_refers_to_exists() {
    let mut main = Vec::new();
    Cli::man(None, &mut main).unwrap();
    let main = String::from_utf8(main).unwrap();
    let mut cmd = <Cli as clap::CommandFactory>::command();
    cmd.build();
    let subs: Vec<&str> = cmd.get_subcommands().map(|s| s.get_name()).collect();
    assert_eq!(subs, MAN_PAGES, "a page for each subcommand");
    for name in subs {
        let full = format!("profile\\-{name}(1)");
        assert!(main.contains(&full), "profile(1) names {full}");
        let mut page = Vec::new();
        Cli::man(Some(name), &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(
            page.contains(&format!(".TH profile-{name} 1 ")),
            "{}",
            &page[..page.len().min(300)]
        );
    }
    // install.sh installs exactly these pages.
    let install = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh"),
    )
    .unwrap();
    assert!(
        install.contains(&format!("for sub in {}; do", MAN_PAGES.join(" "))),
        "scripts/install.sh's page list differs from MAN_PAGES"
    );
    let mut record = Vec::new();
    Cli::man(Some("record"), &mut record).unwrap();
    assert!(String::from_utf8(record).unwrap().contains("\\-\\-output"));
}

#[test]
fn defaults_match_profile_py() {
    let c = parse(&[]).unwrap();
    assert_eq!(c.sampler.rate, SampleRate::Frequency(49));
    assert_eq!(c.sampler.hash_storage_size, 40960);
    assert_eq!(c.sampler.stack_storage_size, 16384);
    assert!(c.sampler.user_stacks && c.sampler.kernel_stacks);
    assert!(!c.sampler.include_idle);
    assert_eq!(
        c.header.unwrap().line(),
        "Sampling at 49 Hertz of all threads by user + kernel stack... Hit Ctrl-C to end."
    );
}

#[test]
fn rejects_bad_input() {
    for args in [
        &["-F", "99", "-c", "10000"][..],
        &["-F", "100001"],
        &["-c", "1"],
        &["--interval", "1e19"],
        &["--interval", "NaN"],
        &["-E", "--width", "100000"],
        &["-E", "--render-threads", "100000"],
        &["-P", "//"],
        &["-P", "/{x}"],
        &["-P", "/*"],
        &["-P", "/:id"],
        &["-p", "abc"],
        &["-p", "4000000000"],
        &["-p", "1", "-L", "1"],
        &["-U", "-K"],
        &["-C", "4096"],
        &["-C", "-2"],
        &["--interval", "0.01"],
        &["--cgroupmap", "/nonexistent/map"],
        &["0"],
        &["-g", "frames/fg.png"],
        &["-g", "frames/fg%d%d.png"],
        &["-E", "--frame-mode", "window:0"],
        &["-E", "--width", "1921"],
        &["-P", "live"],
        &["-T", "--history", "0"],
        &["-T", "--listen", "localhost"],
        &["-o", "x.txt"],
        &["record"],
        &["record", "-o", "x.rsprof", "-E"],
    ] {
        assert!(parse(args).is_err(), "{args:?} was accepted");
    }
}

#[test]
fn own_pid_is_accepted_and_headers_name_it() {
    let me = std::process::id().to_string();
    let c = parse(&["-p", &me, "-U", "-c", "1000000", "5"]).unwrap();
    assert_eq!(c.sampler.pids, vec![std::process::id()]);
    assert_eq!(
        c.header.unwrap().line(),
        format!("Sampling at every 1000000 events of PID [{me}] by user stack for 5 secs.")
    );
    assert!(parse(&["-f"]).unwrap().header.is_none());
    let c = parse(&["-E"]).unwrap();
    let frames = c.frames.unwrap();
    assert_eq!(
        frames.pattern.path(3),
        std::path::PathBuf::from("frames/flamegraph0003.png")
    );
    let c = parse(&["-g", "out/x%03d.svg", "--frame-mode", "decay:0.8"]).unwrap();
    assert_eq!(c.frames.unwrap().mode, FrameMode::Decay(0.8));
    let c = parse(&["record", "-o", "/nonexistent-dir/x.rsprof", "-F", "99", "2"]).unwrap();
    assert!(c.record);
    assert_eq!(c.duration, Some(std::time::Duration::from_secs(2)));
    assert_eq!(c.sampler.rate, SampleRate::Frequency(99));
}

/// Any value of any numeric option gives an error or a config within
/// bounds, never a panic (issue 9).
mod numeric_options {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|f| f.to_string()),
            (0u32..=20).prop_map(|e| format!("1e{e}")),
            Just("18446744073709551616".to_string()),
            Just("inf".to_string()),
            Just("NaN".to_string()),
            Just("-0".to_string()),
            Just("0".to_string()),
            Just("1".to_string()),
            "[0-9]{1,30}",
        ]
    }

    const OPTIONS: &[&str] = &[
        "-F",
        "-c",
        "--hash-storage-size",
        "--stack-storage-size",
        "-C",
        "--interval",
        "--width",
        "--height",
        "--render-threads",
        "--start-number",
        "-R",
        "--history",
        "--frame-mode=window:",
        "--frame-mode=decay:",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn never_panics(picks in proptest::collection::vec((0..OPTIONS.len(), value()), 1..4), duration in proptest::option::of(value())) {
            let mut args = vec!["-E".to_string(), "-T".to_string()];
            for (i, v) in picks {
                let opt = OPTIONS[i];
                if opt.ends_with(':') {
                    args.push(format!("{opt}{v}"));
                } else {
                    args.push(opt.to_string());
                    args.push(v);
                }
            }
            args.extend(duration);
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            if let Ok(c) = parse(&refs) {
                let iv = c.interval.as_secs_f64();
                prop_assert!((MIN_INTERVAL..=sampling::MAX_INTERVAL).contains(&iv));
                let f = c.frames.unwrap();
                prop_assert!(f.canvas.width <= frames::MAX_WIDTH);
                prop_assert!(f.canvas.height <= frames::MAX_HEIGHT);
                prop_assert!(f.start_number <= frames::MAX_START_NUMBER);
                match c.sampler.rate {
                    SampleRate::Frequency(hz) => prop_assert!(hz > 0 && hz <= sampling::max_sample_rate()),
                    SampleRate::Period(n) => prop_assert!(n > 0),
                }
            }
        }
    }
}
