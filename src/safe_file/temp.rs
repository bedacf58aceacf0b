//! A file being written, inside a [`SafeDir`], that gets its name only once
//! it is whole.
//!
//! Where the file system has it, the file is created unnamed
//! (`O_TMPFILE`): there is no temporary name another user could rename,
//! replace with a link or watch with inotify, and a crash leaves nothing.
//! It is then given its name with `linkat`, which fails if the name is
//! taken (no clobbering), or, to replace a file, linked under a random name
//! and renamed over the target. Elsewhere a random name is created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW`. Either way, after the rename the target is
//! checked to be our very file (device and inode): if someone swapped a
//! name meanwhile, the write fails naming the file, and nothing is
//! reported as written that was not.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};

use super::dir::{fstat, lstat_at, open_at, SafeDir};

/// A file in progress; removed (or, unnamed, simply gone) if dropped
/// before [`TempFile::persist`].
pub struct TempFile {
    dir: Arc<SafeDir>,
    file: File,
    /// The random name it has, if the file system gave it no `O_TMPFILE`.
    named: Option<String>,
    target: String,
}

/// A random hex name beside `target`.
fn random_name(target: &str) -> String {
    let mut b = [0u8; 8];
    // SAFETY: b is writable for its length. A short or failed read leaves
    // zeros, and O_EXCL still makes the name exclusive.
    let _ = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let short: String = target.chars().take(64).collect();
    format!(".{short}.{hex}.tmp")
}

fn same_file(a: &libc::stat, b: &libc::stat) -> bool {
    a.st_dev == b.st_dev && a.st_ino == b.st_ino
}

impl TempFile {
    /// A new file that will be `target` in `dir`.
    pub fn new(dir: &Arc<SafeDir>, target: &str) -> Result<TempFile> {
        check_name(target)?;
        let shown = dir.shown(target);
        let flags = libc::O_RDWR;
        match open_at(dir.raw(), OsStr::new("."), libc::O_TMPFILE | flags, 0o666) {
            Ok(fd) => Ok(TempFile {
                dir: dir.clone(),
                file: File::from(fd),
                named: None,
                target: target.to_string(),
            }),
            Err(e) if unsupported(&e) => {
                let (name, fd) = create_named(dir, target)
                    .with_context(|| format!("cannot create a file in {}", dir.path().display()))?;
                Ok(TempFile {
                    dir: dir.clone(),
                    file: File::from(fd),
                    named: Some(name),
                    target: target.to_string(),
                })
            }
            Err(e) => Err(e).with_context(|| {
                format!(
                    "cannot create {} (in {})",
                    shown.display(),
                    dir.path().display()
                )
            }),
        }
    }

    /// Creates and drops a file: can this folder be written?
    pub(super) fn probe(dir: &SafeDir) -> io::Result<()> {
        match open_at(
            dir.raw(),
            OsStr::new("."),
            libc::O_TMPFILE | libc::O_WRONLY,
            0o600,
        ) {
            Ok(_) => Ok(()),
            Err(e) if unsupported(&e) => {
                let name = random_name("probe");
                let fd = open_at(
                    dir.raw(),
                    OsStr::new(&name),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
                    0o600,
                )?;
                drop(fd);
                dir.unlink(&name)
            }
            Err(e) => Err(e),
        }
    }

    /// The open file, to write into.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A second descriptor of the same file, for a child process that
    /// writes it (ffmpeg gets it as its stdout and opens
    /// `/proc/self/fd/1`, which reopens this very file, never a path).
    pub fn share(&self) -> Result<OwnedFd> {
        Ok(self
            .file
            .try_clone()
            .context("failed to share a descriptor")?
            .into())
    }

    /// The target, for messages.
    pub fn shown(&self) -> std::path::PathBuf {
        self.dir.shown(&self.target)
    }

    /// Gives the file its name. With `replace`, a regular file there is
    /// replaced; without, a taken name is an error. Links, devices and
    /// folders there are never replaced. With `sync` the data reaches the
    /// disk first.
    pub fn persist(mut self, replace: bool, sync: bool) -> Result<()> {
        let shown = self.shown();
        if sync {
            self.file
                .sync_data()
                .with_context(|| format!("failed to write {}", shown.display()))?;
        }
        let ours = fstat(self.file.as_raw_fd())?;
        let dirfd = self.dir.raw();
        if self.named.is_none() && !replace {
            // One atomic step: the name is created pointing at our file,
            // or the call fails because it is taken.
            return link_fd(&self.file, dirfd, &self.target).map_err(|e| taken(e, &shown));
        }
        let tmp = match self.named.clone() {
            Some(n) => {
                // Still ours? (A non-sticky folder, allowed with
                // --unsafe-output-dir, lets others rename entries.)
                match lstat_at(dirfd, OsStr::new(&n))? {
                    Some(st) if same_file(&st, &ours) => n,
                    _ => bail!(
                        "{}: its temporary file was replaced by someone else; not written",
                        shown.display()
                    ),
                }
            }
            None => self.link_random()?,
        };
        let result = (|| {
            if replace {
                if let Some(st) = lstat_at(dirfd, OsStr::new(&self.target))? {
                    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
                        bail!(
                            "{} is no longer a regular file; refusing to replace it",
                            shown.display()
                        );
                    }
                }
                rename_at(dirfd, &tmp, &self.target, 0)
                    .with_context(|| format!("failed to rename into {}", shown.display()))
            } else {
                rename_at(dirfd, &tmp, &self.target, libc::RENAME_NOREPLACE)
                    .map_err(|e| taken(e, &shown))
            }
        })();
        if result.is_err() {
            let _ = self.dir.unlink(&tmp);
        }
        unregister(dirfd, &tmp);
        self.named = None;
        result?;
        match lstat_at(dirfd, OsStr::new(&self.target))? {
            Some(st) if same_file(&st, &ours) => Ok(()),
            Some(st) => bail!(
                "{} was replaced by someone else (uid {}) while it was being written; not written",
                shown.display(),
                st.st_uid
            ),
            None => bail!(
                "{} was removed by someone else as it was written; not written",
                shown.display()
            ),
        }
    }

    /// Links the unnamed file under a fresh random name.
    fn link_random(&mut self) -> Result<String> {
        for _ in 0..16 {
            let name = random_name(&self.target);
            match link_fd(&self.file, self.dir.raw(), &name) {
                Ok(()) => {
                    register(&self.dir, &name);
                    return Ok(name);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot name a file in {}", self.dir.path().display())
                    })
                }
            }
        }
        bail!(
            "cannot find a free temporary name in {}",
            self.dir.path().display()
        )
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(n) = self.named.take() {
            // Only our own file: a name someone swapped is left alone.
            let ours = fstat(self.file.as_raw_fd()).ok();
            let there = lstat_at(self.dir.raw(), OsStr::new(&n)).ok().flatten();
            if let (Some(a), Some(b)) = (ours, there) {
                if same_file(&a, &b) {
                    let _ = self.dir.unlink(&n);
                }
            }
            unregister(self.dir.raw(), &n);
        }
    }
}

/// A file name of the folder: no separators, not `.` or `..`.
pub fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        bail!("{name:?} is not a file name");
    }
    Ok(())
}

fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
    )
}

fn taken(e: io::Error, shown: &std::path::Path) -> anyhow::Error {
    if e.kind() == io::ErrorKind::AlreadyExists {
        anyhow::Error::new(e).context(format!(
            "{} appeared while it was being written; refusing to replace it",
            shown.display()
        ))
    } else {
        anyhow::Error::new(e).context(format!("failed to name {}", shown.display()))
    }
}

fn create_named(dir: &Arc<SafeDir>, target: &str) -> io::Result<(String, OwnedFd)> {
    for _ in 0..16 {
        let name = random_name(target);
        match open_at(
            dir.raw(),
            OsStr::new(&name),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR | libc::O_NOFOLLOW,
            0o666,
        ) {
            Ok(fd) => {
                register(dir, &name);
                return Ok((name, fd));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::ErrorKind::AlreadyExists.into())
}

/// `linkat` of an open (possibly unnamed) file to `name` in `dir`.
fn link_fd(file: &File, dir: i32, name: &str) -> io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).expect("no NUL");
    let to = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: both strings are NUL-terminated.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            dir,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn rename_at(dir: i32, from: &str, to: &str, flags: u32) -> io::Result<()> {
    let a = CString::new(from).map_err(|_| io::ErrorKind::InvalidInput)?;
    let b = CString::new(to).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: both strings are NUL-terminated.
    let r = unsafe { libc::renameat2(dir, a.as_ptr(), dir, b.as_ptr(), flags) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Named temporary files being written: a second Ctrl-C exits without
/// running destructors, and removes these first.
static IN_FLIGHT: Mutex<Vec<(Arc<SafeDir>, String)>> = Mutex::new(Vec::new());

fn register(dir: &Arc<SafeDir>, name: &str) {
    let mut v = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    v.push((dir.clone(), name.to_string()));
}

fn unregister(dir: i32, name: &str) {
    let mut v = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    v.retain(|(d, n)| !(d.raw() == dir && n == name));
}

/// Removes every named temporary file still being written.
pub fn remove_in_flight() {
    // try_lock: the signal thread must not wait on a writer that is stuck.
    let Ok(mut v) = IN_FLIGHT.try_lock() else {
        return;
    };
    for (d, n) in v.drain(..) {
        let _ = d.unlink(&n);
    }
}
