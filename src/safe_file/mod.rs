//! Writing files safely. The profiler runs as root and is often pointed at
//! folders others can write to (`/tmp`, a shared frames folder), so no
//! write may go through a name someone else can change between our check
//! and our write:
//!
//! - every output folder is opened once, its path checked component by
//!   component ([`SafeDir`]): a folder another user can write without the
//!   sticky bit, or one reached through another user's link, is refused
//!   unless `--unsafe-output-dir`;
//! - a whole file (a frame, an export, a video) is written unnamed or under
//!   an exclusive random name in that folder and named at the end without
//!   clobbering ([`TempFile`]); a child process (ffmpeg) writes to a
//!   descriptor we hand it, never to a path;
//! - a file written as it goes (a recording) is created with `O_EXCL`, and
//!   checked at the end to still be ours;
//! - streams are `-`, our own descriptors (`/dev/stdout`, `/dev/fd/N`), or
//!   a FIFO or character device named directly: pinned with `O_PATH` when
//!   the run starts and reopened through that descriptor, so swapping the
//!   name later changes nothing. Block devices and links are refused.

mod dir;
mod temp;

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

pub use dir::{allow_unsafe_dirs, SafeDir};
pub use temp::TempFile;

/// Where the bytes of an output go, decided before anything is written.
#[derive(Debug, Clone)]
pub enum Target {
    /// `-`: standard output.
    Stdout,
    /// A FIFO or character device, or a descriptor we were given: pinned
    /// when the run started, written as it is, never created, renamed or
    /// truncated.
    Stream(Stream),
    /// A regular file, written whole and named at the end.
    File {
        /// The folder, opened once.
        dir: Arc<SafeDir>,
        /// The file's name in it.
        name: String,
        /// It exists and may be replaced (`--overwrite`).
        replace: bool,
    },
}

/// A special file pinned by a descriptor.
#[derive(Debug, Clone)]
pub struct Stream {
    fd: Arc<OwnedFd>,
    path: PathBuf,
    /// The descriptor is already open for writing (a dup of one of ours);
    /// otherwise it is an `O_PATH` pin, reopened for writing when needed.
    writable: bool,
}

impl Stream {
    /// Opens the pinned object for writing (a FIFO waits for its reader
    /// here, as a shell's `>` does).
    pub fn open(&self) -> Result<File> {
        if self.writable {
            let fd = self
                .fd
                .try_clone()
                .context("failed to duplicate a descriptor")?;
            return Ok(File::from(fd));
        }
        OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
            .with_context(|| format!("cannot open {} for writing", self.path.display()))
    }
}

/// `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`: names of a
/// descriptor this process was given, and which one.
fn own_fd(path: &Path) -> Option<i32> {
    let s = path.to_str()?;
    match s {
        "/dev/stdout" => Some(1),
        "/dev/stderr" => Some(2),
        _ => s
            .strip_prefix("/dev/fd/")
            .or_else(|| s.strip_prefix("/proc/self/fd/"))?
            .parse()
            .ok()
            .filter(|n| *n >= 0),
    }
}

impl Target {
    /// Decides how to write `path`, opening its folder now. An existing
    /// regular file is refused unless `overwrite`; a link, a folder, a
    /// block device or a socket always is.
    pub fn resolve(path: &Path, overwrite: bool) -> Result<Target> {
        if path.as_os_str() == "-" {
            return Ok(Target::Stdout);
        }
        if let Some(n) = own_fd(path) {
            // SAFETY: dup of a descriptor number; a bad one fails.
            let fd = unsafe { libc::fcntl(n, libc::F_DUPFD_CLOEXEC, 3) };
            if fd < 0 {
                return Err(io::Error::last_os_error())
                    .with_context(|| format!("cannot write to {}", path.display()));
            }
            return Ok(Target::Stream(Stream {
                // SAFETY: fd was just returned to us by fcntl.
                fd: Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }),
                path: path.to_path_buf(),
                writable: true,
            }));
        }
        let (folder, name) = split(path)?;
        let dir = SafeDir::open(folder, false)?;
        let Some(st) = dir.stat(&name)? else {
            return Ok(Target::File {
                dir,
                name,
                replace: false,
            });
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFLNK => bail!(
                "{} is a symbolic link; refusing to write through it or replace it (name the file it points to)",
                path.display()
            ),
            libc::S_IFDIR => bail!("{} is a folder", path.display()),
            libc::S_IFBLK => bail!(
                "{} is a block device; refusing to write onto it",
                path.display()
            ),
            libc::S_IFSOCK => bail!("{} is a socket; cannot write to it", path.display()),
            libc::S_IFIFO | libc::S_IFCHR => {
                let fd = dir::open_at(
                    dir.raw(),
                    OsStr::new(&name),
                    libc::O_PATH | libc::O_NOFOLLOW,
                    0,
                )
                .with_context(|| format!("cannot open {}", path.display()))?;
                // What we pinned is what we checked (not swapped since).
                let again = dir::fstat(fd.as_raw_fd())?;
                if again.st_ino != st.st_ino || again.st_dev != st.st_dev {
                    bail!("{} changed while it was opened", path.display());
                }
                Ok(Target::Stream(Stream {
                    fd: Arc::new(fd),
                    path: path.to_path_buf(),
                    writable: false,
                }))
            }
            _ if !overwrite => bail!(
                "{} already exists; use --overwrite to replace it",
                path.display()
            ),
            _ => Ok(Target::File {
                dir,
                name,
                replace: true,
            }),
        }
    }

    /// The target as users named it, for messages.
    pub fn display(&self) -> String {
        match self {
            Target::Stdout => "standard output".into(),
            Target::Stream(s) => s.path.display().to_string(),
            Target::File { dir, name, .. } => dir.shown(name).display().to_string(),
        }
    }

    /// Writes `bytes` as the whole content of the target.
    pub fn write_all(&self, bytes: &[u8]) -> Result<()> {
        match self {
            Target::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())?;
                Ok(())
            }
            Target::Stream(s) => s
                .open()?
                .write_all(bytes)
                .with_context(|| format!("failed to write {}", s.path.display())),
            Target::File { dir, name, replace } => write_whole(dir, name, bytes, *replace),
        }
    }
}

/// A path's folder and file name. A path that ends in `/` (or `.`) names
/// a folder, not a file.
pub fn split(path: &Path) -> Result<(&Path, String)> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.ends_with(b"/") || bytes.ends_with(b"/.") || bytes.ends_with(b"/..") {
        bail!("{} names a folder, not a file", path.display());
    }
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} names no file (or not in UTF-8)", path.display()))?;
    temp::check_name(name)?;
    Ok((folder_of(path), name.to_string()))
}

/// Writes a whole regular file: unnamed (or under an exclusive random
/// name) in the folder, then named. A regular file there is replaced only
/// with `replace`; whatever appeared meanwhile is never clobbered.
pub fn write_whole(dir: &Arc<SafeDir>, name: &str, bytes: &[u8], replace: bool) -> Result<()> {
    let tmp = TempFile::new(dir, name)?;
    tmp.file()
        .write_all(bytes)
        .with_context(|| format!("failed to write {}", dir.shown(name).display()))?;
    tmp.persist(replace, true)
}

/// [`write_whole`] without waiting for the disk: for video frames, written
/// by the hundred (a sync each was most of a near-empty frame's cost).
/// Readers still never see part of a file; a crash may lose the last
/// frames, which the recording can render again.
pub fn write_whole_unsynced(dir: &Arc<SafeDir>, name: &str, bytes: &[u8]) -> Result<()> {
    let tmp = TempFile::new(dir, name)?;
    tmp.file()
        .write_all(bytes)
        .with_context(|| format!("failed to write {}", dir.shown(name).display()))?;
    tmp.persist(false, false)
}

/// Removes every temporary file still being written. For the second Ctrl-C,
/// which exits without running destructors.
pub fn remove_temp_files() {
    temp::remove_in_flight();
}

/// The folder a file goes in (`.` for a bare name).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Opens a file that is written as it goes (a recording), so that whatever
/// was written survives a crash. Created exclusively (`O_EXCL` never follows
/// a link); with `--overwrite` an existing regular file is unlinked first,
/// never truncated through a link. Non-regular targets stream.
pub fn create_streaming(target: &Target) -> Result<Box<dyn StreamSink>> {
    Ok(match target {
        Target::Stdout => Box::new(io::stdout()),
        Target::Stream(s) => Box::new(s.open()?),
        Target::File { dir, name, replace } => {
            let shown = dir.shown(name);
            if *replace {
                match dir.stat(name)? {
                    Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFREG => dir
                        .unlink(name)
                        .with_context(|| format!("cannot replace {}", shown.display()))?,
                    Some(_) => bail!(
                        "{} is no longer a regular file; refusing to replace it",
                        shown.display()
                    ),
                    None => {}
                }
            }
            let fd = dir::open_at(
                dir.raw(),
                OsStr::new(name),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW,
                0o666,
            )
            .with_context(|| format!("cannot create {}", shown.display()))?;
            Box::new(NamedSink {
                file: File::from(fd),
                dir: dir.clone(),
                name: name.clone(),
            })
        }
    })
}

/// Like [`create_streaming`], but a regular file gets its name only when
/// [`StreamSink::finish`] succeeds (an import: a failed one leaves nothing
/// behind, not half a recording).
pub fn create_staged(target: &Target) -> Result<Box<dyn StreamSink>> {
    match target {
        Target::File { dir, name, replace } => Ok(Box::new(StagedSink {
            tmp: Some(TempFile::new(dir, name)?),
            replace: *replace,
        })),
        other => create_streaming(other),
    }
}

/// A file written whole before it is named.
struct StagedSink {
    tmp: Option<TempFile>,
    replace: bool,
}

impl StagedSink {
    fn file(&self) -> io::Result<&File> {
        self.tmp
            .as_ref()
            .map(TempFile::file)
            .ok_or_else(|| io::Error::other("already finished"))
    }
}

impl Write for StagedSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut f = self.file()?;
        f.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl StreamSink for StagedSink {
    fn sync(&mut self) -> io::Result<()> {
        // Durable once named, at the end.
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        match self.tmp.take() {
            Some(t) => t.persist(self.replace, true),
            None => Ok(()),
        }
    }
}

/// A sink written as it goes, made durable record by record.
pub trait StreamSink: Write + Send {
    /// Makes what was written durable (a no-op where that means nothing, as
    /// on a pipe).
    fn sync(&mut self) -> io::Result<()>;

    /// At the end: checks that what was written is where the user will
    /// look for it (a file created in a folder others may change is still
    /// ours under its name).
    fn finish(&mut self) -> Result<()> {
        self.sync().context("failed to write")
    }
}

impl StreamSink for File {
    fn sync(&mut self) -> io::Result<()> {
        self.flush()?;
        match self.metadata() {
            Ok(m) if m.file_type().is_file() => self.sync_data(),
            _ => Ok(()),
        }
    }
}

impl StreamSink for io::Stdout {
    fn sync(&mut self) -> io::Result<()> {
        self.flush()
    }
}

/// A regular file created under its own name in a [`SafeDir`].
struct NamedSink {
    file: File,
    dir: Arc<SafeDir>,
    name: String,
}

impl Write for NamedSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl StreamSink for NamedSink {
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn finish(&mut self) -> Result<()> {
        let shown = self.dir.shown(&self.name);
        self.file
            .sync_data()
            .with_context(|| format!("failed to write {}", shown.display()))?;
        let ours = dir::fstat(self.file.as_raw_fd())?;
        match self.dir.stat(&self.name)? {
            Some(st) if st.st_dev == ours.st_dev && st.st_ino == ours.st_ino => Ok(()),
            Some(st) => bail!(
                "{} was replaced by someone else (uid {}) while it was being written; the recording is not there",
                shown.display(),
                st.st_uid
            ),
            None => bail!(
                "{} was removed by someone else while it was being written",
                shown.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn file_of(t: &Target) -> (PathBuf, bool) {
        match t {
            Target::File { dir, name, replace } => (dir.shown(name), *replace),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_links_and_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("out.folded");
        symlink(&victim, &link).unwrap();
        for overwrite in [false, true] {
            let err = Target::resolve(&link, overwrite).unwrap_err().to_string();
            assert!(err.contains("symbolic link"), "{err}");
        }
        let dangling = dir.path().join("d.folded");
        symlink(dir.path().join("nowhere"), &dangling).unwrap();
        assert!(Target::resolve(&dangling, true).is_err());
        assert!(Target::resolve(&victim, false).is_err());
        assert_eq!(
            file_of(&Target::resolve(&victim, true).unwrap()),
            (victim.clone(), true)
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(Target::resolve(dir.path(), true).is_err());
        let slash = format!("{}/x.folded/", dir.path().display());
        let err = Target::resolve(Path::new(&slash), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("names a folder"), "{err}");
    }

    #[test]
    fn special_files_stream_and_block_devices_are_refused() {
        assert!(matches!(
            Target::resolve(Path::new("-"), false).unwrap(),
            Target::Stdout
        ));
        let null = Target::resolve(Path::new("/dev/null"), false).unwrap();
        assert!(matches!(null, Target::Stream(_)));
        null.write_all(b"x").unwrap();
        assert!(matches!(
            Target::resolve(Path::new("/dev/stdout"), false).unwrap(),
            Target::Stream(_)
        ));
        let dir = tempfile::tempdir().unwrap();
        let blk = dir.path().join("blk");
        let c = std::ffi::CString::new(blk.to_str().unwrap()).unwrap();
        // SAFETY: mknod of a block device node (7, 0: loop0) in our folder.
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(7, 0)) } == 0 {
            let err = Target::resolve(&blk, true).unwrap_err().to_string();
            assert!(err.contains("block device"), "{err}");
        }
    }

    #[test]
    fn a_fifo_swapped_for_a_link_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("out.folded");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let t = Target::resolve(&fifo, false).unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        // Keep a reader on the pinned FIFO, then swap the name.
        let reader = std::thread::spawn({
            let f = fifo.clone();
            move || fs::read(f).unwrap()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        fs::rename(&fifo, dir.path().join("moved")).unwrap();
        symlink(&victim, &fifo).unwrap();
        t.write_all(b"profile").unwrap();
        assert_eq!(reader.join().unwrap(), b"profile");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn whole_writes_leave_no_temp_and_never_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let d = SafeDir::open(dir.path(), false).unwrap();
        write_whole(&d, "a.svg", b"one", false).unwrap();
        let path = dir.path().join("a.svg");
        assert_eq!(fs::read(&path).unwrap(), b"one");
        // Without replace, a file that appeared meanwhile is kept.
        assert!(write_whole(&d, "a.svg", b"two", false).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_whole(&d, "a.svg", b"three", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        // The mode a plain create gets under this umask.
        let plain = dir.path().join("plain");
        fs::write(&plain, b"").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain));
        fs::remove_file(&plain).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        d.check_writable().unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        // A link where the file should go is never replaced.
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        symlink(&victim, dir.path().join("l.svg")).unwrap();
        assert!(write_whole(&d, "l.svg", b"x", true).is_err());
        assert!(write_whole(&d, "l.svg", b"x", false).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }

    #[test]
    fn streaming_create_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let d = SafeDir::open(dir.path(), false).unwrap();
        symlink(&victim, dir.path().join("r.rsprof")).unwrap();
        // A link planted after the check is not followed.
        for replace in [false, true] {
            let t = Target::File {
                dir: d.clone(),
                name: "r.rsprof".into(),
                replace,
            };
            assert!(create_streaming(&t).is_err());
        }
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        // A recording moved away and replaced while it is written is
        // reported at the end.
        let t = Target::resolve(&dir.path().join("s.rsprof"), false).unwrap();
        let mut sink = create_streaming(&t).unwrap();
        sink.write_all(b"rec").unwrap();
        fs::rename(dir.path().join("s.rsprof"), dir.path().join("gone")).unwrap();
        symlink(&victim, dir.path().join("s.rsprof")).unwrap();
        let err = sink.finish().unwrap_err().to_string();
        assert!(err.contains("replaced by someone else"), "{err}");
    }
}
