//! Writing files safely. The profiler runs as root and is often pointed at
//! folders others can write to (`/tmp`, a shared frames folder), so no write
//! may follow a link someone planted there:
//!
//! - a whole file (a frame, an export) is written to an unpredictable name
//!   created exclusively in the target's own folder (`tempfile`'s
//!   `O_CREAT|O_EXCL`), then renamed into place; a target that did not exist
//!   is never replaced by one that appeared meanwhile (`persist_noclobber`);
//! - a target that exists and is not a regular file (a device, a FIFO,
//!   `/dev/stdout`) is never renamed over: the bytes stream into it, and `-`
//!   means standard output;
//! - a symbolic link to a regular file is refused outright: writing through
//!   it could clobber anything, renaming over it would surprise its owner.
//!
//! Temporary files in flight are registered so that a second Ctrl-C, which
//! ends the process without running destructors, can still remove them.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Where the bytes of an output go, decided before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `-`: standard output.
    Stdout,
    /// An existing non-regular file (device, FIFO, socket, `/dev/stdout`):
    /// opened for writing as it is, never created, renamed or truncated.
    Stream(PathBuf),
    /// A regular file, written whole through a temporary file and a rename.
    File {
        /// The file.
        path: PathBuf,
        /// It exists and may be replaced (`--overwrite`).
        replace: bool,
    },
}

impl Target {
    /// Decides how to write `path`. An existing regular file is refused
    /// unless `overwrite`; a link to a regular file always is.
    pub fn resolve(path: &Path, overwrite: bool) -> Result<Target> {
        if path.as_os_str() == "-" {
            return Ok(Target::Stdout);
        }
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Target::File {
                    path: path.to_path_buf(),
                    replace: false,
                })
            }
            Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            bail!("{} is a folder", path.display());
        }
        if ft.is_symlink() {
            let target = fs::metadata(path);
            return match target {
                Ok(t) if !t.file_type().is_file() && !t.is_dir() => {
                    Ok(Target::Stream(path.to_path_buf()))
                }
                // /dev/stdout -> /proc/self/fd/1 -> a file the shell opened:
                // the caller's own descriptor, not a planted link.
                Ok(t) if t.file_type().is_file() && is_own_fd_link(path) => {
                    Ok(Target::Stream(path.to_path_buf()))
                }
                Ok(_) => bail!(
                    "{} is a symbolic link; refusing to write through it or replace it (name the file it points to)",
                    path.display()
                ),
                Err(_) => bail!(
                    "{} is a dangling symbolic link; refusing to write through it or replace it",
                    path.display()
                ),
            };
        }
        if !ft.is_file() {
            return Ok(Target::Stream(path.to_path_buf()));
        }
        if !overwrite {
            bail!(
                "{} already exists; use --overwrite to replace it",
                path.display()
            );
        }
        Ok(Target::File {
            path: path.to_path_buf(),
            replace: true,
        })
    }

    /// The target as users named it, for messages.
    pub fn display(&self) -> String {
        match self {
            Target::Stdout => "standard output".into(),
            Target::Stream(p) | Target::File { path: p, .. } => p.display().to_string(),
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
            Target::Stream(path) => open_stream(path)?
                .write_all(bytes)
                .with_context(|| format!("failed to write {}", path.display())),
            Target::File { path, replace } => write_whole(path, bytes, *replace),
        }
    }
}

/// `/dev/stdout`, `/dev/stderr`, `/dev/fd/N`, `/proc/self/fd/N`: links to a
/// descriptor this process was given.
fn is_own_fd_link(path: &Path) -> bool {
    let s = path.to_string_lossy();
    s == "/dev/stdout"
        || s == "/dev/stderr"
        || s.starts_with("/dev/fd/")
        || s.starts_with("/proc/self/fd/")
}

/// Opens an existing non-regular file for writing, without creating or
/// truncating anything.
fn open_stream(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {} for writing", path.display()))
}

/// Writes a whole regular file: a temporary file created exclusively in the
/// same folder, then renamed into place. The rename replaces only a regular
/// file we were allowed to replace; otherwise it refuses to clobber whatever
/// appeared at the target meanwhile.
pub fn write_whole(path: &Path, bytes: &[u8], replace: bool) -> Result<()> {
    let tmp = TempFile::new_for(path)?;
    tmp.file()
        .write_all(bytes)
        .with_context(|| format!("failed to write {}", path.display()))?;
    tmp.persist(replace)
}

/// [`write_whole`] without waiting for the disk: for video frames, written
/// by the hundred (a sync each was most of a near-empty frame's cost).
/// Readers still never see part of a file; a crash may lose the last
/// frames, which the recording can render again.
pub fn write_whole_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = TempFile::new_for(path)?;
    tmp.file()
        .write_all(bytes)
        .with_context(|| format!("failed to write {}", path.display()))?;
    tmp.persist_with(false, false)
}

/// A file in progress: exclusive, unpredictable name beside its target,
/// removed if it is dropped before [`TempFile::persist`].
pub struct TempFile {
    inner: Option<tempfile::NamedTempFile>,
    target: PathBuf,
}

impl TempFile {
    /// A temporary file in `target`'s folder.
    pub fn new_for(target: &Path) -> Result<TempFile> {
        let dir = folder_of(target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{} names no file", target.display()))?;
        let inner = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            // As a plain create would: 0666 less the umask (tempfile's
            // default, 0600, would hide frames from the user making the video).
            .permissions(fs::Permissions::from_mode(0o666))
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a file in {}", dir.display()))?;
        register(inner.path());
        Ok(TempFile {
            inner: Some(inner),
            target: target.to_path_buf(),
        })
    }

    /// Its path (for a child process that writes it, such as ffmpeg).
    pub fn path(&self) -> &Path {
        self.inner.as_ref().expect("not yet persisted").path()
    }

    /// The open file, to write into.
    pub fn file(&self) -> &File {
        self.inner.as_ref().expect("not yet persisted").as_file()
    }

    /// Flushes the file and renames it to its target. With `replace` a
    /// regular file there is replaced; without, any file there is kept and
    /// this is an error. A link or special file there is never replaced.
    pub fn persist(self, replace: bool) -> Result<()> {
        self.persist_with(replace, true)
    }

    /// [`TempFile::persist`], flushing to the disk first only with `sync`.
    fn persist_with(mut self, replace: bool, sync: bool) -> Result<()> {
        let inner = self.inner.take().expect("persisted once");
        let tmp_path = inner.path().to_path_buf();
        let target = self.target.clone();
        let result = (|| {
            if sync {
                inner
                    .as_file()
                    .sync_data()
                    .with_context(|| format!("failed to write {}", target.display()))?;
            }
            if replace {
                if let Ok(m) = fs::symlink_metadata(&target) {
                    if !m.file_type().is_file() {
                        bail!(
                            "{} is no longer a regular file; refusing to replace it",
                            target.display()
                        );
                    }
                }
                inner
                    .persist(&target)
                    .map_err(|e| e.error)
                    .with_context(|| format!("failed to rename into {}", target.display()))?;
            } else {
                inner.persist_noclobber(&target).map_err(|e| {
                    let exists = e.error.kind() == io::ErrorKind::AlreadyExists;
                    let err = anyhow::Error::new(e.error);
                    if exists {
                        err.context(format!(
                            "{} appeared while it was being written; refusing to replace it",
                            target.display()
                        ))
                    } else {
                        err.context(format!("failed to rename into {}", target.display()))
                    }
                })?;
            }
            Ok(())
        })();
        unregister(&tmp_path);
        result
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            unregister(inner.path());
            // NamedTempFile's own drop removes the file.
        }
    }
}

/// Temporary files being written right now.
static IN_FLIGHT: Mutex<Option<HashSet<PathBuf>>> = Mutex::new(None);

fn register(path: &Path) {
    let mut set = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    set.get_or_insert_with(HashSet::new)
        .insert(path.to_path_buf());
}

fn unregister(path: &Path) {
    let mut set = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = set.as_mut() {
        s.remove(path);
    }
}

/// Removes every temporary file still being written. For the second Ctrl-C,
/// which exits without running destructors.
pub fn remove_temp_files() {
    // try_lock: the signal thread must not wait on a writer that is stuck.
    let Ok(mut set) = IN_FLIGHT.try_lock() else {
        return;
    };
    if let Some(s) = set.as_mut() {
        for p in s.drain() {
            let _ = fs::remove_file(p);
        }
    }
}

/// The folder a file goes in (`.` for a bare name).
pub fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Checks that files can be created in `dir`, leaving nothing behind (an
/// unnamed `O_TMPFILE` where the file system has it).
pub fn check_writable(dir: &Path) -> Result<()> {
    tempfile::tempfile_in(dir)
        .map(drop)
        .with_context(|| format!("cannot write to {}", dir.display()))
}

/// Opens a file that is written as it goes (a recording), so that whatever
/// was written survives a crash. Created exclusively (`O_EXCL` never follows
/// a link); with `--overwrite` an existing regular file is unlinked first,
/// never truncated through a link. Non-regular targets stream.
pub fn create_streaming(target: &Target) -> Result<Box<dyn StreamSink>> {
    Ok(match target {
        Target::Stdout => Box::new(io::stdout()),
        Target::Stream(path) => Box::new(open_stream(path)?),
        Target::File { path, replace } => {
            if *replace {
                match fs::symlink_metadata(path) {
                    Ok(m) if m.file_type().is_file() => fs::remove_file(path)
                        .with_context(|| format!("cannot replace {}", path.display()))?,
                    Ok(_) => bail!(
                        "{} is no longer a regular file; refusing to replace it",
                        path.display()
                    ),
                    Err(_) => {}
                }
            }
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .with_context(|| format!("cannot create {}", path.display()))?;
            Box::new(file)
        }
    })
}

/// A sink written as it goes, made durable record by record.
pub trait StreamSink: Write + Send {
    /// Makes what was written durable (a no-op where that means nothing, as
    /// on a pipe).
    fn sync(&mut self) -> io::Result<()>;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

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
            Target::resolve(&victim, true).unwrap(),
            Target::File {
                path: victim.clone(),
                replace: true
            }
        );
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(Target::resolve(dir.path(), true).is_err());
    }

    #[test]
    fn special_files_stream() {
        assert_eq!(
            Target::resolve(Path::new("-"), false).unwrap(),
            Target::Stdout
        );
        assert_eq!(
            Target::resolve(Path::new("/dev/null"), false).unwrap(),
            Target::Stream("/dev/null".into())
        );
        Target::Stream("/dev/null".into()).write_all(b"x").unwrap();
        assert!(matches!(
            Target::resolve(Path::new("/dev/stdout"), false).unwrap(),
            Target::Stream(_)
        ));
    }

    #[test]
    fn whole_writes_leave_no_temp_and_never_clobber() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.svg");
        write_whole(&path, b"one", false).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        // Without replace, a file that appeared meanwhile is kept.
        assert!(write_whole(&path, b"two", false).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_whole(&path, b"three", true).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        // The mode a plain create gets under this umask.
        let plain = dir.path().join("plain");
        fs::write(&plain, b"").unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), mode(&plain));
        fs::remove_file(&plain).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        check_writable(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn streaming_create_is_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let link = dir.path().join("r.rsprof");
        symlink(&victim, &link).unwrap();
        // A link planted after the check is not followed.
        let t = Target::File {
            path: link.clone(),
            replace: false,
        };
        assert!(create_streaming(&t).is_err());
        let t = Target::File {
            path: link,
            replace: true,
        };
        assert!(create_streaming(&t).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }
}
