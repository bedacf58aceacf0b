//! An output folder, opened once and used through its descriptor.
//!
//! The folder's path is resolved one component at a time with
//! `O_PATH|O_NOFOLLOW`, each component checked on the object actually
//! opened (no check-then-use gap), as OpenSSH's `safe_path` and sudo check
//! theirs: a folder another user can write without the sticky bit, a
//! folder owned by another user, or a symbolic link owned by another user
//! on the way is refused (unless `--unsafe-output-dir`). After that every
//! create, rename, list and removal happens relative to the descriptor
//! (`openat`, `renameat2`, `linkat`, `unlinkat`), so the folder cannot be
//! swapped for a link to somewhere else in the middle of a run.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};

/// `--unsafe-output-dir`: folders other users can write are accepted.
static ALLOW_UNSAFE: AtomicBool = AtomicBool::new(false);

/// Accept output folders that other users can write (`--unsafe-output-dir`).
/// Writes still never follow a link and never replace what is not ours.
pub fn allow_unsafe_dirs(allow: bool) {
    ALLOW_UNSAFE.store(allow, Ordering::SeqCst);
}

/// Symbolic links followed while resolving one folder (the kernel's own
/// limit is 40).
const MAX_LINKS: usize = 40;

/// A folder opened for writing outputs into.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// The users whose folders and links are trusted: root, the user we run
/// as, and the user who ran `sudo` (asking root to write into one's own
/// folder is no attack).
struct Trusted {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl Trusted {
    fn now() -> Trusted {
        // SAFETY: geteuid/getegid cannot fail.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let mut uids = vec![0, euid];
        let mut gids = vec![0, egid];
        let env = |k| std::env::var(k).ok().and_then(|v| v.parse::<u32>().ok());
        if euid == 0 {
            uids.extend(env("SUDO_UID"));
            gids.extend(env("SUDO_GID"));
        }
        Trusted { uids, gids }
    }

    fn uid(&self, uid: u32) -> bool {
        self.uids.contains(&uid)
    }

    /// Who other than a trusted user can change entries of a folder with
    /// this status: the owner, the group or everyone.
    fn writers(&self, st: &libc::stat) -> Option<String> {
        let mode = st.st_mode;
        if !self.uid(st.st_uid) {
            // An owner can always give itself write permission.
            return Some(format!("is owned by uid {}", st.st_uid));
        }
        if mode & libc::S_IWGRP != 0 && !self.gids.contains(&st.st_gid) {
            return Some(format!("is writable by group {}", st.st_gid));
        }
        if mode & libc::S_IWOTH != 0 {
            return Some("is writable by everyone".into());
        }
        None
    }
}

fn cstr(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).with_context(|| format!("{s:?} holds a NUL byte"))
}

pub(super) fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: a zeroed stat is a valid out-buffer; fd is a live descriptor.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`; `None` when nothing is there.
pub(super) fn lstat_at(dir: RawFd, name: &OsStr) -> Result<Option<libc::stat>> {
    let c = cstr(name)?;
    // SAFETY: as in fstat; c is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatat(dir, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) } != 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(e.into());
    }
    Ok(Some(st))
}

pub(super) fn open_at(dir: RawFd, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = CString::new(name.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: c is NUL-terminated; a returned fd is ours to own.
    let fd = unsafe { libc::openat(dir, c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn kind(st: &libc::stat) -> u32 {
    st.st_mode & libc::S_IFMT
}

impl SafeDir {
    /// Opens `path` as an output folder, creating what is missing when
    /// `create`. Refused (one line naming the culprit) when any folder on
    /// the way can be changed by another user, unless
    /// [`allow_unsafe_dirs`].
    pub fn open(path: &Path, create: bool) -> Result<Arc<SafeDir>> {
        let shown = if path.as_os_str().is_empty() {
            Path::new(".")
        } else {
            path
        };
        let fd = resolve(
            shown,
            create,
            &Trusted::now(),
            ALLOW_UNSAFE.load(Ordering::SeqCst),
        )?;
        Ok(Arc::new(SafeDir {
            fd,
            path: shown.to_path_buf(),
        }))
    }

    /// The folder as the user named it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A file of the folder, for messages.
    pub fn shown(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub(super) fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// What is at `name` now, without following a link.
    pub fn stat(&self, name: &str) -> Result<Option<libc::stat>> {
        lstat_at(self.raw(), OsStr::new(name))
            .with_context(|| format!("cannot inspect {}", self.shown(name).display()))
    }

    /// The names in the folder.
    pub fn names(&self) -> Result<Vec<String>> {
        // The descriptor's own entry in /proc reopens this very folder.
        let me = format!("/proc/self/fd/{}", self.raw());
        let mut out = Vec::new();
        for e in std::fs::read_dir(&me)
            .with_context(|| format!("failed to list {}", self.path.display()))?
            .flatten()
        {
            if let Some(n) = e.file_name().to_str() {
                out.push(n.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes `name` if it is a regular file or a link (the link itself,
    /// never what it points to).
    pub fn remove(&self, name: &str) -> Result<()> {
        let shown = self.shown(name);
        match self.stat(name)? {
            None => return Ok(()),
            Some(st) if kind(&st) == libc::S_IFREG || kind(&st) == libc::S_IFLNK => {}
            Some(_) => bail!(
                "{} is not a regular file; refusing to remove it",
                shown.display()
            ),
        }
        self.unlink(name)
            .with_context(|| format!("failed to remove {}", shown.display()))
    }

    pub(super) fn unlink(&self, name: &str) -> io::Result<()> {
        let c = CString::new(name).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: c is NUL-terminated.
        if unsafe { libc::unlinkat(self.raw(), c.as_ptr(), 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Opens a regular file of the folder for reading, never through a link.
    pub fn open_regular(&self, name: &str) -> Result<std::fs::File> {
        let shown = self.shown(name);
        let fd = open_at(
            self.raw(),
            OsStr::new(name),
            libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK,
            0,
        )
        .with_context(|| format!("cannot open {}", shown.display()))?;
        let st = fstat(fd.as_raw_fd())?;
        if kind(&st) != libc::S_IFREG {
            bail!("{} is not a regular file", shown.display());
        }
        Ok(std::fs::File::from(fd))
    }

    /// Checks that files can be created here, leaving nothing behind.
    pub fn check_writable(&self) -> Result<()> {
        super::temp::TempFile::probe(self)
            .with_context(|| format!("cannot write to {}", self.path.display()))
    }
}

impl AsRawFd for SafeDir {
    fn as_raw_fd(&self) -> RawFd {
        self.raw()
    }
}

/// Resolves `path` component by component from `/` or the current folder.
fn resolve(path: &Path, create: bool, trust: &Trusted, allow: bool) -> Result<OwnedFd> {
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW;
    let start = if path.is_absolute() { "/" } else { "." };
    let mut cur = open_at(libc::AT_FDCWD, OsStr::new(start), flags, 0)
        .with_context(|| format!("cannot open {start}"))?;
    let mut shown = PathBuf::from(start);
    let mut todo: VecDeque<OsString> = components(path);
    let mut links = 0;
    // Whether another user may change the entries of the folder we are in.
    let mut parent_open = check(&cur, &shown, trust, allow)?;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            cur = open_at(cur.as_raw_fd(), &name, flags, 0)
                .with_context(|| format!("cannot open {}/..", shown.display()))?;
            shown.push("..");
            parent_open = check(&cur, &shown, trust, allow)?;
            continue;
        }
        let here = shown.join(&name);
        let st = match lstat_at(cur.as_raw_fd(), &name)? {
            Some(st) => st,
            None if create => {
                let c = cstr(&name)?;
                // SAFETY: c is NUL-terminated.
                if unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o777) } != 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(e).with_context(|| {
                            format!("cannot create the folder {}", here.display())
                        });
                    }
                }
                todo.push_front(name);
                continue;
            }
            None => bail!("{}: no such folder", here.display()),
        };
        if parent_open.is_some() && !trust.uid(st.st_uid) && !allow {
            bail!(
                "{} is owned by uid {} in a folder others can write; refusing to write there as uid {} (--unsafe-output-dir allows it)",
                here.display(),
                st.st_uid,
                unsafe { libc::geteuid() }
            );
        }
        match kind(&st) {
            libc::S_IFLNK => {
                if !trust.uid(st.st_uid) && !allow {
                    bail!(
                        "{} is a symbolic link owned by uid {}; refusing to follow it (--unsafe-output-dir allows it)",
                        here.display(),
                        st.st_uid
                    );
                }
                links += 1;
                if links > MAX_LINKS {
                    bail!("{}: too many levels of symbolic links", path.display());
                }
                let target = read_link_at(cur.as_raw_fd(), &name)
                    .with_context(|| format!("cannot read the link {}", here.display()))?;
                let target = Path::new(&target);
                for c in components(target).into_iter().rev() {
                    todo.push_front(c);
                }
                if target.is_absolute() {
                    cur = open_at(libc::AT_FDCWD, OsStr::new("/"), flags, 0)?;
                    shown = PathBuf::from("/");
                    parent_open = check(&cur, &shown, trust, allow)?;
                }
            }
            libc::S_IFDIR => {
                cur = open_at(cur.as_raw_fd(), &name, flags, 0)
                    .with_context(|| format!("cannot open the folder {}", here.display()))?;
                shown = here;
                parent_open = check(&cur, &shown, trust, allow)?;
            }
            _ => bail!("{} is not a folder", here.display()),
        }
    }
    open_at(
        cur.as_raw_fd(),
        OsStr::new("."),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .with_context(|| format!("cannot open the folder {}", path.display()))
}

/// Who other than us can change the entries of the folder `fd`, if anyone;
/// a folder they can change without the sticky bit is refused at once
/// unless it is the last one (whose message names it).
fn check(fd: &OwnedFd, shown: &Path, trust: &Trusted, allow: bool) -> Result<Option<String>> {
    let st = fstat(fd.as_raw_fd())?;
    let who = trust.writers(&st);
    if let Some(w) = &who {
        let sticky = st.st_mode & libc::S_ISVTX != 0;
        let owned_by_other = !trust.uid(st.st_uid);
        if (owned_by_other || !sticky) && !allow {
            bail!(
                "{} {w}; refusing to write there as uid {} (use a folder of your own, or --unsafe-output-dir)",
                shown.display(),
                unsafe { libc::geteuid() }
            );
        }
    }
    Ok(who)
}

fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

fn read_link_at(dir: RawFd, name: &OsStr) -> io::Result<OsString> {
    let c = CString::new(name.as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::readlinkat(dir, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(OsString::from_vec(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn strict() -> Trusted {
        Trusted {
            uids: vec![0, unsafe { libc::geteuid() }],
            gids: vec![0, unsafe { libc::getegid() }],
        }
    }

    #[test]
    fn opens_and_creates_own_folders() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("a/b/c");
        resolve(&p, true, &strict(), false).unwrap();
        assert!(p.is_dir());
        assert!(resolve(&t.path().join("nope"), false, &strict(), false).is_err());
        // A link of our own is followed.
        symlink(&p, t.path().join("l")).unwrap();
        resolve(&t.path().join("l"), false, &strict(), false).unwrap();
    }

    #[test]
    fn refuses_folders_others_can_write() {
        let t = tempfile::tempdir().unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = resolve(&open, false, &strict(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("writable by everyone"), "{err}");
        assert!(resolve(&open.join("sub"), true, &strict(), false).is_err());
        assert!(!open.join("sub").exists(), "nothing created under it");
        resolve(&open, false, &strict(), true).unwrap();
        // Sticky, like /tmp: allowed.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        resolve(&open, false, &strict(), false).unwrap();
        resolve(&open.join("mine"), true, &strict(), false).unwrap();
    }

    #[test]
    fn refuses_what_other_users_own() {
        if unsafe { libc::geteuid() } != 0 {
            return; // chown needs root; the end-to-end tests run as root
        }
        let t = tempfile::tempdir().unwrap();
        let theirs = t.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let err = resolve(&theirs, false, &strict(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("owned by uid 65534"), "{err}");
        // Their link to our folder is not followed either.
        let link = t.path().join("link");
        symlink(t.path(), &link).unwrap();
        std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
        let err = resolve(&link, false, &strict(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("symbolic link owned by uid 65534"), "{err}");
    }
}
