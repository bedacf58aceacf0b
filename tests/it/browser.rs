//! The live page in headless Chromium (Debian's chromium, driven by
//! playwright-core from tests/browser): it updates, zooms on click, and
//! draws something.

use std::path::Path;
use std::process::Command;

use crate::common::{require_bpf, Workload};
use crate::feed::Feed;

/// Whether the browser test can run; like BPF, required under CI.
fn browser_available() -> bool {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    let ok = Path::new("/usr/bin/chromium").exists()
        && dir.join("node_modules/playwright-core").exists()
        && Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        let required = std::env::var_os("RS_PROFILE_REQUIRE_BPF").is_some()
            || std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !required,
            "chromium, node or tests/browser/node_modules missing (scripts/install-deps.sh)"
        );
        eprintln!("browser test: chromium or playwright-core missing, skipping");
    }
    ok
}

#[test]
fn the_page_updates_zooms_and_draws() {
    require_bpf!();
    if !browser_available() {
        return;
    }
    let w = Workload::start("mix", 20.0, &[]);
    let feed = Feed::start(&["-p", &w.pid.to_string(), "--interval", "0.5", "-f", "15"]);
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("page.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/feed.mjs");
    let out = Command::new("node")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{}/", feed.port))
        .arg(&shot)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(v["shown"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(v["zoomed"], true, "{v}");
    assert!(v["frame"].as_str().unwrap().starts_with("alpha ("), "{v}");

    // The screenshot is not blank: many colours, and flame-graph warm ones.
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    let channels = info.color_type.samples();
    let mut colours = std::collections::HashSet::new();
    let mut warm = 0;
    for px in buf[..info.buffer_size()].chunks_exact(channels) {
        colours.insert((px[0], px[1], px[2]));
        if px[0] > 180 && px[2] < 100 {
            warm += 1;
        }
    }
    assert!(colours.len() > 20, "{} colours", colours.len());
    assert!(warm > 10_000, "{warm} warm pixels");
    drop(feed);
}
