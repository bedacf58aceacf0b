// The Rust no-frame-pointer workload (rustc -C opt-level=2, the release
// default: no frame pointers): main -> run -> outer -> middle -> inner.
use std::hint::black_box;
use std::time::{Duration, Instant};

#[inline(never)]
fn inner(x: u64) -> u64 {
    let mut x = x;
    for i in 0..2000u64 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
    }
    black_box(x)
}

#[inline(never)]
fn middle(x: u64) -> u64 {
    black_box(inner(x)) + 1
}

#[inline(never)]
fn outer(x: u64) -> u64 {
    black_box(middle(x)) ^ 3
}

#[inline(never)]
fn run(secs: f64) -> u64 {
    let t0 = Instant::now();
    let mut s = 0u64;
    let limit = Duration::from_secs_f64(secs);
    loop {
        for i in 0..256 {
            s = s.wrapping_add(black_box(outer(s + i)));
        }
        if t0.elapsed() > limit {
            return s;
        }
    }
}

fn main() {
    println!("pid={}", std::process::id());
    let secs = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10.0);
    std::process::exit((run(secs) & 1) as i32);
}
