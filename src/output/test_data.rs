//! Fixed profiles and golden-file checks for the output tests.
//! `RS_PROFILE_BLESS=1 cargo test` rewrites the goldens in tests/data/.

use std::path::PathBuf;

use super::StackFormat;
use crate::profile::{Frame, FrameInfo, MappingInfo, Profile, Stack, StackKey, Symbol};

/// Frames as a walk gives them: kernel frames in `kernel`, `__read` in
/// libc, `[unknown]` with no module; made-up but stable addresses and
/// offsets (each name's offset is its length, its address a hash of it).
fn frames(names: &[&str]) -> Stack {
    Stack::Frames(
        names
            .iter()
            .map(|name| {
                let kernel = !name.starts_with('_') && !name.starts_with('[');
                let known = !name.starts_with('[');
                let seed = name
                    .bytes()
                    .fold(0u64, |h, b| h.wrapping_mul(31) + u64::from(b));
                Frame::new(FrameInfo {
                    name: Symbol::from(*name),
                    module: known
                        .then(|| Symbol::from(if kernel { "kernel" } else { "libc.so.6" })),
                    offset: known.then_some(name.len() as u64),
                    addr: Some(if kernel {
                        0xffff_ffff_8100_0000 | (seed & 0xff_ffff)
                    } else {
                        0x7f00_0000_0000 | (seed & 0xff_ffff)
                    }),
                    // libc's frames: a source line and their mapping.
                    source: (known && !kernel).then(|| (Symbol::from("sysdeps/read.c"), 26)),
                    mapping: (known && !kernel).then(|| {
                        std::sync::Arc::new(MappingInfo {
                            path: "/usr/lib/x86_64-linux-gnu/libc.so.6".into(),
                            start: 0x7f00_0000_0000,
                            end: 0x7f00_0100_0000,
                            file_offset: 0x28000,
                            build_id: Some("c1a8f2".into()),
                        })
                    }),
                })
            })
            .collect(),
    )
}

/// A profile shaped like bcc's captures in shared/notes/profile-py-output.
pub(crate) fn sample_profile() -> Profile {
    let mut p = Profile::default();
    let read_k = frames(&[
        "read_zero",
        "vfs_read",
        "ksys_read",
        "do_syscall_64",
        "entry_SYSCALL_64_after_hwframe",
    ]);
    let key = |comm: &str, pid, user, kernel| StackKey {
        comm: String::from(comm),
        pid,
        user,
        kernel,
    };
    p.add(key("dd", 28401, frames(&["__read"]), read_k.clone()), 70);
    p.add(key("dd", 28401, frames(&["__read"]), Stack::Absent), 3);
    p.add(
        key(
            "dd",
            28401,
            frames(&["[unknown]", "[unknown]"]),
            Stack::Absent,
        ),
        1,
    );
    p.add(key("dd", 28401, Stack::Missed, Stack::Missed), 5);
    p.add(key("dd", 28401, frames(&["__read"]), Stack::Missed), 91);
    p.add(key("dd", 28401, Stack::Missed, read_k), 2);
    p.add(
        key(
            "kworker/0:1",
            17,
            Stack::Absent,
            frames(&["worker_thread", "kthread"]),
        ),
        4,
    );
    p
}

/// Format variants and the suffix naming their golden files.
pub(crate) fn formats() -> Vec<(&'static str, StackFormat)> {
    let d = StackFormat::default();
    vec![
        ("", d),
        (
            "_-d_-a",
            StackFormat {
                delimited: true,
                annotations: true,
                ..d
            },
        ),
        (
            "_-U",
            StackFormat {
                kernel_stacks: false,
                ..d
            },
        ),
        (
            "_-K",
            StackFormat {
                user_stacks: false,
                ..d
            },
        ),
    ]
}

/// Compares `got` with tests/data/NAME, writing it when missing or blessing.
pub(crate) fn check_golden(name: &str, got: &[u8]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    if std::env::var_os("RS_PROFILE_BLESS").is_some() || !path.exists() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read(&path).unwrap();
    assert!(
        want == got,
        "{} differs from the golden file.\n--- want\n{}\n--- got\n{}\nIf the change is intended, rerun with RS_PROFILE_BLESS=1 and review the diff.",
        path.display(),
        String::from_utf8_lossy(&want),
        String::from_utf8_lossy(got)
    );
}
