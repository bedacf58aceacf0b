//! The executable table: one entry per executable file (device and inode),
//! shared by every process that maps it, and counted.
//!
//! A process is a thin list of its executable mappings, each pointing at
//! its file's entry; what is known of a file (its unwind table's place in
//! the BPF shards, for the unwinder that owns this table) is held once, in
//! the entry, however many processes map it. Entries are counted by the
//! processes that use them: an exec replaces the process's list, an exit
//! (the BPF exit event) drops it, and an entry nobody uses is what the
//! owner frees first when it needs room. Work happens on these events,
//! never per interval.

use std::collections::HashMap;

use super::FileId;

/// One executable mapping of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingRef {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset of `start`.
    pub offset: u64,
    /// The file mapped (None: anonymous code, the vDSO).
    pub file: Option<FileId>,
}

/// A process as the table knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// Which of its address spaces (exec and pid reuse make new ones).
    pub aspace: u32,
    /// Its executable mappings, sorted.
    pub mappings: Vec<MappingRef>,
    /// The files it holds a count on (those that had an entry when it was
    /// attached), so a detach gives back exactly what it took.
    counted: Vec<FileId>,
}

struct Entry<T> {
    state: T,
    users: usize,
    /// When a process last attached it (eviction order).
    last_used: u64,
}

/// What [`Executables::attach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// The process already had these very mappings: nothing changed.
    Unchanged,
    /// The process's mappings were set (new, exec'd, or changed).
    Set,
}

/// Executables and the processes that map them.
pub struct Executables<T> {
    files: HashMap<FileId, Entry<T>>,
    procs: HashMap<u32, Process>,
    clock: u64,
}

impl<T> Default for Executables<T> {
    fn default() -> Self {
        Executables {
            files: HashMap::new(),
            procs: HashMap::new(),
            clock: 0,
        }
    }
}

impl<T> Executables<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `file` has an entry.
    pub fn contains(&self, file: &FileId) -> bool {
        self.files.contains_key(file)
    }

    /// Adds a file's entry (used by nobody yet); replaces one there was.
    pub fn insert(&mut self, file: FileId, state: T) {
        self.files.insert(
            file,
            Entry {
                state,
                users: 0,
                last_used: self.clock,
            },
        );
    }

    /// A file's state.
    pub fn state(&self, file: &FileId) -> Option<&T> {
        self.files.get(file).map(|e| &e.state)
    }

    /// How many processes map `file`.
    pub fn users(&self, file: &FileId) -> usize {
        self.files.get(file).map_or(0, |e| e.users)
    }

    /// A process's entry.
    pub fn process(&self, pid: u32) -> Option<&Process> {
        self.procs.get(&pid)
    }

    /// Sets a process's executable mappings: a new process, one that
    /// exec'd (a new address space under the same pid) or one that mapped
    /// more. The files it maps that have entries are counted once each.
    pub fn attach(&mut self, pid: u32, aspace: u32, mappings: Vec<MappingRef>) -> Attached {
        if let Some(p) = self.procs.get(&pid) {
            if p.aspace == aspace && p.mappings == mappings {
                return Attached::Unchanged;
            }
        }
        self.detach(pid, None);
        self.clock += 1;
        let mut counted: Vec<FileId> = mappings.iter().filter_map(|m| m.file).collect();
        counted.sort_unstable();
        counted.dedup();
        counted.retain(|f| match self.files.get_mut(f) {
            Some(e) => {
                e.users += 1;
                e.last_used = self.clock;
                true
            }
            None => false,
        });
        self.procs.insert(
            pid,
            Process {
                aspace,
                mappings,
                counted,
            },
        );
        Attached::Set
    }

    /// Drops a process: it exited (`aspace` given: only if that is the
    /// address space held, since an exit seen late must not drop the new
    /// process that reused the pid) or is replaced (`None`).
    pub fn detach(&mut self, pid: u32, aspace: Option<u32>) -> Option<Process> {
        if aspace.is_some_and(|a| self.procs.get(&pid).is_some_and(|p| p.aspace != a)) {
            return None;
        }
        let p = self.procs.remove(&pid)?;
        for f in &p.counted {
            if let Some(e) = self.files.get_mut(f) {
                e.users -= 1;
            }
        }
        Some(p)
    }

    /// The file nobody maps that was used least recently, among those
    /// `worth` says are worth freeing.
    pub fn least_recently_used_unused(&self, worth: impl Fn(&T) -> bool) -> Option<FileId> {
        self.files
            .iter()
            .filter(|(_, e)| e.users == 0 && worth(&e.state))
            .min_by_key(|(_, e)| e.last_used)
            .map(|(f, _)| *f)
    }

    /// Frees a file's entry (nobody may map it).
    pub fn remove(&mut self, file: &FileId) -> Option<T> {
        if self.users(file) > 0 {
            return None;
        }
        self.files.remove(file).map(|e| e.state)
    }

    /// The pids held.
    pub fn pids(&self) -> impl Iterator<Item = u32> + '_ {
        self.procs.keys().copied()
    }

    /// Files with an entry.
    pub fn files(&self) -> usize {
        self.files.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(inode: u64) -> FileId {
        FileId {
            dev: (8, 1),
            inode,
            version: 0,
        }
    }
    fn maps(files: &[u64]) -> Vec<MappingRef> {
        files
            .iter()
            .enumerate()
            .map(|(i, f)| MappingRef {
                start: 0x1000 * (i as u64 + 1),
                end: 0x1000 * (i as u64 + 2),
                offset: 0,
                file: Some(file(*f)),
            })
            .collect()
    }
    const LIBC: u64 = 1;
    const BASH: u64 = 2;
    const XZ: u64 = 3;

    fn table() -> Executables<&'static str> {
        let mut t = Executables::new();
        t.insert(file(LIBC), "libc");
        t.insert(file(BASH), "bash");
        t.insert(file(XZ), "xz");
        t
    }

    #[test]
    fn processes_share_one_entry_per_file() {
        let mut t = table();
        assert_eq!(t.attach(10, 0, maps(&[BASH, LIBC])), Attached::Set);
        assert_eq!(t.attach(11, 0, maps(&[XZ, LIBC, LIBC])), Attached::Set);
        assert_eq!(t.users(&file(LIBC)), 2, "counted once per process");
        assert_eq!(t.users(&file(BASH)), 1);
        assert_eq!(t.files(), 3);
        // The same mappings again cost nothing.
        assert_eq!(
            t.attach(11, 0, maps(&[XZ, LIBC, LIBC])),
            Attached::Unchanged
        );
        assert_eq!(t.users(&file(LIBC)), 2);
    }

    #[test]
    fn exit_gives_back_and_frees_what_nobody_maps() {
        let mut t = table();
        t.attach(10, 0, maps(&[BASH, LIBC]));
        t.attach(11, 0, maps(&[XZ, LIBC]));
        assert!(t.remove(&file(XZ)).is_none(), "in use");
        assert!(t.detach(11, Some(0)).is_some());
        assert_eq!((t.users(&file(LIBC)), t.users(&file(XZ))), (1, 0));
        assert_eq!(t.least_recently_used_unused(|_| true), Some(file(XZ)));
        assert_eq!(t.remove(&file(XZ)), Some("xz"));
        assert_eq!(t.least_recently_used_unused(|_| true), None);
        assert!(t.detach(11, Some(0)).is_none(), "twice is nothing");
    }

    #[test]
    fn exec_replaces_the_process() {
        let mut t = table();
        t.attach(10, 0, maps(&[BASH, LIBC]));
        // bash execs xz: the same pid, a new address space.
        assert_eq!(t.attach(10, 7, maps(&[XZ, LIBC])), Attached::Set);
        assert_eq!(t.users(&file(BASH)), 0);
        assert_eq!(t.users(&file(XZ)), 1);
        assert_eq!(t.users(&file(LIBC)), 1);
        // The old address space's exit, seen late, drops nothing.
        assert!(t.detach(10, Some(0)).is_none());
        assert_eq!(t.process(10).unwrap().aspace, 7);
    }

    #[test]
    fn a_reused_pid_is_a_new_process() {
        let mut t = table();
        t.attach(10, 3, maps(&[BASH, LIBC]));
        t.detach(10, Some(3));
        t.attach(10, 9, maps(&[XZ]));
        assert_eq!(t.users(&file(LIBC)), 0);
        assert_eq!(t.users(&file(XZ)), 1);
        assert_eq!(t.pids().collect::<Vec<_>>(), vec![10]);
    }

    #[test]
    fn a_file_added_later_is_not_given_back_twice() {
        let mut t = Executables::new();
        t.insert(file(LIBC), "libc");
        // xz had no entry yet when the process was attached.
        t.attach(10, 0, maps(&[XZ, LIBC]));
        t.insert(file(XZ), "xz");
        t.attach(11, 0, maps(&[XZ]));
        t.detach(10, None);
        assert_eq!(t.users(&file(XZ)), 1, "still used by 11");
    }

    #[test]
    fn eviction_takes_the_least_recently_used() {
        let mut t = table();
        t.attach(1, 0, maps(&[XZ]));
        t.attach(2, 0, maps(&[BASH]));
        t.detach(1, None);
        t.detach(2, None);
        assert_eq!(t.least_recently_used_unused(|_| true), Some(file(LIBC)));
        assert_eq!(
            t.least_recently_used_unused(|s| *s != "libc"),
            Some(file(XZ))
        );
    }
}
