//! The live feed as an attacker or an unlucky network would treat it
//! (issue 16): foreign Host headers, a listen address beyond loopback,
//! slowloris clients and thousands of idle connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::require_bpf;
use crate::feed::{free_port, Feed};

/// A raw request; returns the status code (0 if the server closed first).
fn request(port: u16, path: &str, headers: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn foreign_host_headers_are_refused() {
    require_bpf!();
    let feed = Feed::start(&["-f", "4"]);
    let p = feed.port;
    assert_eq!(request(p, "/", "Host: localhost\r\n"), 200);
    assert_eq!(request(p, "/", &format!("Host: 127.0.0.1:{p}\r\n")), 200);
    // DNS rebinding: the attacker's own name, now pointing here.
    assert_eq!(request(p, "/", "Host: evil.example\r\n"), 421);
    assert_eq!(
        request(p, "/history.json", "Host: 127.0.0.1.evil.example:80\r\n"),
        421
    );
    assert_eq!(request(p, "/", ""), 421);
}

/// `profile -T --listen 0.0.0.0 ...`, with the URL it printed.
fn start_exposed(extra: &[&str]) -> (Child, u16, String) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_profile"))
        .args(["-T", "-R", &port.to_string(), "--listen", "0.0.0.0", "-f"])
        .args(extra)
        .arg("6")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let url = loop {
        let mut line = String::new();
        assert!(err.read_line(&mut line).unwrap() > 0, "no URL in {seen}");
        seen.push_str(&line);
        if let Some(u) = line.trim().strip_prefix("live flame graph at ") {
            break u.to_string();
        }
    };
    assert!(
        seen.contains("warning: the live feed listens on 0.0.0.0"),
        "{seen}"
    );
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, port, url)
}

#[test]
fn beyond_loopback_a_token_is_required() {
    require_bpf!();
    let (mut child, port, url) = start_exposed(&[]);
    let token = url
        .split_once("?token=")
        .expect("a token in the URL")
        .1
        .to_string();
    assert_eq!(token.len(), 32);
    let h = "Host: 127.0.0.1\r\n";
    assert_eq!(request(port, "/", h), 403);
    assert_eq!(request(port, "/latest.folded", h), 403);
    assert_eq!(request(port, "/?token=0123", h), 403);
    assert_eq!(request(port, &format!("/?token={token}"), h), 200);
    // The page's own requests carry it as the cookie the page was given.
    let cookie = format!("{h}Cookie: rsprofile_token={token}\r\n");
    assert_eq!(request(port, "/history.json", &cookie), 200);
    let _ = child.kill();
    let _ = child.wait();

    // --no-token opts out, explicitly.
    let (mut child, port, url) = start_exposed(&["--no-token"]);
    assert!(!url.contains("token="), "{url}");
    assert_eq!(request(port, "/", h), 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn slowloris_clients_are_dropped() {
    require_bpf!();
    let feed = Feed::start(&["-f", "12"]);
    // 60 clients that send half a request line, then a byte now and then.
    let mut clients: Vec<TcpStream> = (0..60)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", feed.port)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                .unwrap();
            s.set_read_timeout(Some(Duration::from_millis(200)))
                .unwrap();
            s
        })
        .collect();
    let start = Instant::now();
    let mut closed = vec![false; clients.len()];
    while start.elapsed() < Duration::from_secs(9) && closed.iter().any(|c| !c) {
        for (i, s) in clients.iter_mut().enumerate() {
            if closed[i] {
                continue;
            }
            let _ = s.write_all(b"a");
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(0) => closed[i] = true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed[i] = true,
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let held = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        held,
        0,
        "{held} slow clients still held after {:?}",
        start.elapsed()
    );
    // And the feed still serves.
    assert_eq!(
        request(feed.port, "/history.json", "Host: localhost\r\n"),
        200
    );
}

#[test]
fn idle_connections_never_starve_the_profiler() {
    require_bpf!();
    // This test opens 2000 connections: raise its own open-file limit.
    // SAFETY: get/setrlimit with valid pointers to a local rlimit.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        lim.rlim_cur = lim.rlim_max.min(8192);
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("f%04d.png");
    let feed = Feed::start(&[
        "-g",
        pattern.to_str().unwrap(),
        "--interval",
        "0.25",
        "-f",
        // Long enough to open 2000 connections on a loaded machine (a
        // connect can wait on a full accept queue) and still be running.
        "10",
    ]);
    let mut idle = Vec::new();
    for _ in 0..2000 {
        match TcpStream::connect(("127.0.0.1", feed.port)) {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    assert!(idle.len() >= 1000, "only {} connections", idle.len());
    // Over the cap, a connection is answered at once: 503. (The server may
    // still be accepting the last ones: look for a while, not once.)
    let mut refused = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    for s in idle.iter() {
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    }
    while refused == 0 && Instant::now() < deadline {
        for s in idle.iter_mut().rev().take(600) {
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503") {
                    refused += 1;
                }
            }
        }
    }
    assert!(refused > 0, "no connection over the cap was answered 503");
    let (ok, _, err) = feed.wait();
    assert!(ok, "{err}");
    // Every frame was written despite the clients' descriptors.
    let frames = crate::common::frames_in(dir.path(), "png").len();
    assert_eq!(frames, 40, "{err}");
    drop(idle);
}
