//! The live feed as an attacker or an unlucky network would treat it
//! (issues 16 and 24): foreign and doubled Host headers, a listen address
//! beyond loopback, slowloris clients, thousands of idle connections,
//! streams that are never read and a crowd asking for expensive renders.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::require_bpf;
use crate::feed::{free_port, Feed};

/// A raw request; returns the status code (0 if the server closed first).
fn request(port: u16, path: &str, headers: &str) -> u16 {
    response(port, path, headers)
        .split_whitespace()
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
    // Two Host headers: which one counts is ambiguous, so neither does.
    assert_eq!(
        request(p, "/", "Host: localhost\r\nHost: evil.example\r\n"),
        400
    );
    assert_eq!(
        request(p, "/", "Host: localhost\r\nHost: localhost\r\n"),
        400
    );
}

/// The whole response to a raw request, as text.
fn response(port: u16, path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
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
    let page = response(port, &format!("/?token={token}"), h);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    // No credential in a cookie: cookies are not scoped by port, so every
    // other service on this host would receive it.
    assert!(
        !page.to_ascii_lowercase().contains("set-cookie"),
        "{}",
        &page[..page.find("\r\n\r\n").unwrap_or(page.len())]
    );
    // The page's own requests carry the token in their URL.
    assert_eq!(
        request(port, &format!("/history.json?token={token}"), h),
        200
    );
    let cookie = format!("{h}Cookie: rsprofile_token={token}\r\n");
    assert_eq!(request(port, "/history.json", &cookie), 403);
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

/// Raises this test process's open-file limit (to at most 8192): the tests
/// below open hundreds of connections.
fn raise_fd_limit() {
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
}

#[test]
fn idle_connections_never_starve_the_profiler() {
    require_bpf!();
    // This test opens 2000 connections.
    raise_fd_limit();
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("f%04d.png");
    let feed = Feed::start(&[
        "-g",
        pattern.to_str().unwrap(),
        "--interval",
        "0.25",
        "-f",
        // Long enough to open 2000 connections on a loaded machine (a
        // connect can wait on a full accept queue; other tests run beside
        // this one) and still be running.
        "20",
    ]);
    let mut idle = Vec::new();
    for _ in 0..2000 {
        match TcpStream::connect(("127.0.0.1", feed.port)) {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    assert!(idle.len() >= 1000, "only {} connections", idle.len());
    // Over the cap, newcomers take the place of the oldest: the server
    // closes those (it never holds more than the cap), and a viewer who
    // arrives now still gets the page.
    let t = Instant::now();
    let page = request(feed.port, "/", "Host: localhost\r\n");
    assert_eq!(page, 200, "the page, with {} clients connected", idle.len());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let deadline = Instant::now() + Duration::from_secs(10);
    for s in idle.iter() {
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    }
    let mut closed = vec![false; idle.len()];
    while Instant::now() < deadline && closed.iter().filter(|c| **c).count() < 1000 {
        for (i, s) in idle.iter_mut().enumerate() {
            if closed[i] {
                continue;
            }
            let mut buf = [0u8; 64];
            match s.read(&mut buf) {
                Ok(0) => closed[i] = true,
                Ok(n) if String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 503") => {
                    closed[i] = true
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed[i] = true,
                _ => {}
            }
        }
    }
    let held = closed.iter().filter(|c| !**c).count();
    assert!(held <= 512, "{held} connections still held (cap 512)");
    let (ok, _, err) = feed.wait();
    assert!(ok, "{err}");
    // Every frame was written despite the clients' descriptors.
    let frames = crate::common::frames_in(dir.path(), "png").len();
    assert_eq!(frames, 80, "{err}");
    drop(idle);
}

/// Connects and sends a request, then never reads a byte.
fn never_read(port: u16, path: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    // A tiny receive buffer: the server's writes block soon.
    let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
    let small: libc::c_int = 4096;
    // SAFETY: setsockopt on our own socket with a valid int.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
    }
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    Some(s)
}

#[test]
fn streams_that_are_never_read_lock_nobody_out() {
    require_bpf!();
    // 520 clients.
    raise_fd_limit();
    let feed = Feed::start(&["--interval", "0.2", "-f", "20"]);
    std::thread::sleep(Duration::from_secs(2));
    let mut crowd = Vec::new();
    for i in 0..520 {
        let path = if i % 2 == 0 {
            "/events"
        } else {
            "/stream.mjpeg"
        };
        crowd.extend(never_read(feed.port, path));
    }
    assert!(crowd.len() >= 500, "{}", crowd.len());
    // A viewer, now and a few seconds later, gets the page, the history
    // and a live stream.
    for round in 0..3 {
        let t = Instant::now();
        assert_eq!(
            request(feed.port, "/", "Host: localhost\r\n"),
            200,
            "round {round}"
        );
        assert_eq!(
            request(feed.port, "/history.json", "Host: localhost\r\n"),
            200
        );
        let mut ev = TcpStream::connect(("127.0.0.1", feed.port)).unwrap();
        ev.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(ev, "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        let mut got = String::new();
        let mut r = BufReader::new(ev);
        while !got.contains("event: frame") {
            let mut line = String::new();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            got.push_str(&line);
        }
        assert!(got.contains("event: frame"), "round {round}: {got}");
        assert!(
            t.elapsed() < Duration::from_secs(4),
            "round {round}: {:?}",
            t.elapsed()
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    drop(crowd);
}

#[test]
fn a_crowd_of_expensive_renders_never_delays_the_page() {
    require_bpf!();
    let feed = Feed::start(&["--interval", "0.2", "-f", "20"]);
    std::thread::sleep(Duration::from_secs(3));
    let port = feed.port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let busy = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let crowd: Vec<_> = (0..40)
        .map(|i| {
            let (stop, busy) = (stop.clone(), busy.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let path = if i % 2 == 0 {
                        "/range/0-100000.svg".to_string()
                    } else {
                        format!("/frames/{}.png", i % 10)
                    };
                    if request(port, &path, "Host: localhost\r\n") == 503 {
                        busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let mut worst = Duration::ZERO;
    for _ in 0..10 {
        let t = Instant::now();
        assert_eq!(request(port, "/", "Host: localhost\r\n"), 200);
        assert_eq!(request(port, "/history.json", "Host: localhost\r\n"), 200);
        worst = worst.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in crowd {
        let _ = c.join();
    }
    assert!(worst < Duration::from_secs(1), "the page took {worst:?}");
    assert!(
        busy.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "a full render queue answers 503"
    );
}
