//! The live flame graph (-T), through a plain HTTP/1.1 client over TCP.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{profile, require_bpf, Workload};

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `profile -T` running in the background; killed when dropped.
pub struct Feed {
    child: Option<Child>,
    pub port: u16,
}

impl Feed {
    pub fn start(args: &[&str]) -> Feed {
        Feed::start_on(free_port(), args)
    }

    /// On a given port (a profiler started again where one ran).
    pub fn start_on(port: u16, args: &[&str]) -> Feed {
        let child = Command::new(env!("CARGO_BIN_EXE_profile"))
            .args(["-T", "-R", &port.to_string()])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the feed never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        Feed {
            child: Some(child),
            port,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Waits for the run to end; returns (success, stdout, stderr).
    pub fn wait(mut self) -> (bool, String, String) {
        let out = self.child.take().unwrap().wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET `path`; returns (status, headers, body).
pub fn get(port: u16, path: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap().trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
    out
}

/// Opens the event stream (request sent, headers read).
pub fn open_events(port: u16) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    while r.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
        line.clear();
    }
    r
}

/// Reads SSE `data:` payloads until `n` distinct frame indices arrived.
pub fn read_frames(r: &mut BufReader<TcpStream>, n: usize) -> Vec<u64> {
    let mut seen: Vec<u64> = Vec::new();
    let mut line = String::new();
    while seen.len() < n {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if let Some(i) = line.find("\"index\":") {
            let rest = &line[i + 8..];
            let idx: u64 = rest[..rest.find(|c: char| !c.is_ascii_digit()).unwrap()]
                .parse()
                .unwrap();
            if !seen.contains(&idx) {
                seen.push(idx);
            }
        }
    }
    seen
}

#[test]
fn serves_the_page_frames_history_and_mjpeg() {
    require_bpf!();
    // Long enough that the MJPEG check, which comes after several renders
    // (about a second each in a debug build), still sees two frames.
    let w = Workload::start("mix", 12.0, &[]);
    let feed = Feed::start(&["-p", &w.pid.to_string(), "--interval", "0.3", "-f", "7"]);
    let port = feed.port;
    let (status, head, page) = get(port, "/");
    assert_eq!(status, 200);
    assert!(head.contains("text/html"));
    let page = String::from_utf8_lossy(&page);
    assert!(
        page.contains("EventSource(withToken(\"events\"))"),
        "the page pushes frames by SSE"
    );
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page loads nothing from elsewhere"
    );

    let mut events = open_events(port);
    let frames = read_frames(&mut events, 3);
    assert_eq!(frames.len(), 3, "{frames:?}");

    let (status, _, folded) = get(port, "/latest.folded");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&folded).contains(";driver;alpha "));
    let (status, head, png) = get(port, "/latest.png");
    assert_eq!(status, 200);
    assert!(head.contains("image/png") && png.starts_with(b"\x89PNG"));
    let (status, _, svg) = get(port, "/latest.svg");
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&svg).contains("<title>alpha ("));

    let (status, _, history) = get(port, "/history.json");
    assert_eq!(status, 200);
    let history: serde_json::Value = serde_json::from_slice(&history).unwrap();
    let list = history.as_array().unwrap();
    assert!(list.len() >= 3);
    let first = list[0]["index"].as_u64().unwrap();
    let (status, _, past) = get(port, &format!("/frames/{first}.folded"));
    assert_eq!(status, 200);
    assert!(!past.is_empty());
    assert_eq!(get(port, &format!("/frames/{first}.svg")).0, 200);
    assert_eq!(get(port, "/frames/999999.svg").0, 404);

    // MJPEG: at least two JPEG parts.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /stream.mjpeg HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let parts = buf
            .windows(4)
            .filter(|w| *w == [0xff, 0xd8, 0xff, 0xe0] || *w == [0xff, 0xd8, 0xff, 0xdb])
            .count();
        if parts >= 2 {
            break;
        }
    }
    let head = String::from_utf8_lossy(&buf[..buf.len().min(300)]).into_owned();
    assert!(head.contains("multipart/x-mixed-replace"), "{head}");
    let jpegs = buf.windows(3).filter(|w| *w == [0xff, 0xd8, 0xff]).count();
    assert!(jpegs >= 2, "{jpegs} JPEG parts");

    // Only its own routes.
    for path in [
        "/nope",
        "/frames/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/frames/1.exe",
        "/latest.svg/x",
    ] {
        assert_eq!(get(port, path).0, 404, "{path}");
    }
    let (ok, stdout, _) = feed.wait();
    assert!(ok);
    assert!(stdout.contains(";alpha "), "the report is still printed");
}

#[test]
fn a_prefix_and_a_stalled_client_among_200() {
    require_bpf!();
    let w = Workload::start("mix", 12.0, &[]);
    let feed = Feed::start(&[
        "-P",
        "/live",
        "-p",
        &w.pid.to_string(),
        "--interval",
        "0.25",
        "-f",
        "7",
    ]);
    let port = feed.port;
    assert_eq!(get(port, "/").0, 404);
    let (status, head, _) = get(port, "/live");
    assert_eq!(status, 308, "{head}");
    assert_eq!(get(port, "/live/").0, 200);

    // Stalled clients: ask for the MJPEG stream and the events, never read.
    let mut stalled = Vec::new();
    for path in ["/live/stream.mjpeg", "/live/events"] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        stalled.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    let clients: Vec<_> = (0..200)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                write!(s, "GET /live/events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
                let mut r = BufReader::new(s);
                let t = Instant::now();
                let frames = read_frames(&mut r, 4);
                (frames, t.elapsed())
            })
        })
        .collect();
    let rss = |pid: u32| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let pid = feed.pid();
    let mut max_rss = 0;
    for c in clients {
        let (frames, took) = c.join().unwrap();
        max_rss = max_rss.max(rss(pid));
        assert_eq!(frames.len(), 4, "a client got {frames:?}");
        // 4 frames at 0.25 s intervals (the first one at once): well under 3 s.
        assert!(
            took < Duration::from_secs(3),
            "a client waited {took:?} for 4 frames"
        );
    }
    assert!(max_rss < 200 * 1024, "RSS {max_rss} KiB with 200 clients");
    drop(stalled);
    let (ok, _, _) = feed.wait();
    assert!(ok);
}

#[test]
fn port_in_use_and_bad_path_are_refused_before_sampling() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let t = Instant::now();
    let out = profile(&["-T", "-R", &port, "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
    assert!(t.elapsed() < Duration::from_secs(3), "it sampled first");
    let out = profile(&["-T", "-P", "live", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("must start with '/'"), "{stderr}");
}

#[test]
fn ctrl_c_closes_the_server_and_prints_the_report() {
    require_bpf!();
    let w = Workload::start("mix", 8.0, &[]);
    let feed = Feed::start(&["-p", &w.pid.to_string(), "--interval", "0.3"]);
    let port = feed.port;
    let mut events = open_events(port);
    assert_eq!(read_frames(&mut events, 2).len(), 2);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(feed.pid() as i32, libc::SIGINT) };
    let (ok, stdout, _) = feed.wait();
    assert!(ok);
    assert!(stdout.contains("    alpha+0x"), "{stdout}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening"
    );
}
