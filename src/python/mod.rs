//! Python frames (`--python auto`): the functions a CPython process runs,
//! read from the interpreter's own frame chain, in the flame graph in place
//! of the `_PyEval_EvalFrameDefault` frames that ran them.
//!
//! - [`Interpreters`] finds, once per interpreter executable (the per-file
//!   state: `python3.X` or `libpython3.X.so`), its version and where its
//!   `_PyRuntime` is; per process, it gives BPF (`python_procs`, which it
//!   owns) that address and the version's [`layout`].
//! - bpf/python.bpf.h walks the sampled thread's frames at each sample and
//!   keeps (code object, instruction) per frame.
//! - [`code`] names the code objects (read once per process and address)
//!   and [`splice`] puts the frames into the native stack, before the
//!   profile model sees it: every output gets them unchanged.

pub mod code;
pub mod layout;
pub mod names;
pub mod splice;

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use object::{Object, ObjectSegment, ObjectSymbol};
use rustc_hash::FxHashMap;

use crate::process::maps::Mapping;
use crate::process::{AspaceId, FileId};

pub use layout::Layout;

/// How Python processes are profiled (`--python`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PythonMode {
    /// Python frames for every CPython 3.8-3.13 process found.
    Auto,
    /// Native frames only.
    Off,
}

/// One Python frame as sampled: the code object it ran and where in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawPyFrame {
    /// Address of the code object.
    pub code: u64,
    /// The frame's instruction pointer.
    pub instr: u64,
    /// The outermost frame of one `_PyEval_EvalFrameDefault` call.
    pub entry: bool,
}

/// A process's interpreter: its layout and where its `_PyRuntime` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interpreter {
    /// The version's offsets.
    pub layout: &'static Layout,
    /// Address of `_PyRuntime` in the process.
    pub runtime: u64,
}

/// What a process's interpreter turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// One this build reads.
    Readable(Interpreter),
    /// A CPython this build can't read, and what it is (`Python 3.7`):
    /// its evaluator frames are named `[python] Python 3.7 (not read)`.
    Unreadable(Arc<str>),
}

/// What one interpreter file holds: its version and `_PyRuntime`'s
/// virtual address, and how its loadable segments map (to place it).
#[derive(Debug, Clone)]
struct InterpreterFile {
    layout: &'static Layout,
    runtime_vaddr: u64,
    /// (file offset, virtual address, file size) of each PT_LOAD.
    segments: Vec<(u64, u64, u64)>,
}

/// Finds the interpreters of processes and owns BPF's `python_procs`.
pub struct Interpreters {
    procs: Option<MapHandle>,
    /// Per file mapped: an interpreter, one we can't read (why), or
    /// neither (None).
    files: FxHashMap<FileId, Option<Result<InterpreterFile, Arc<str>>>>,
    /// Interpreter files met, with their version or why they can't be
    /// read, for --stats.
    met: Vec<String>,
    /// Processes given to BPF.
    loaded: FxHashMap<u32, u32>,
}

/// Whether a file's name says it may be a CPython interpreter.
fn looks_like_python(name: &str) -> bool {
    name.starts_with("python3") || name.starts_with("libpython3")
}

impl Interpreters {
    /// With `procs`, BPF's `python_procs` (None: find, but tell no one).
    pub fn new(procs: Option<MapHandle>) -> Interpreters {
        Interpreters {
            procs,
            files: FxHashMap::default(),
            met: Vec::new(),
            loaded: FxHashMap::default(),
        }
    }

    /// A process's executable mappings, as read when it was announced:
    /// finds its interpreter (if any) and hands it to BPF.
    pub fn seen(&mut self, id: AspaceId, maps: &[Mapping]) -> Option<Found> {
        let interp = match self.find(id.pid, maps)? {
            Found::Readable(i) => i,
            unreadable => return Some(unreadable),
        };
        if let Some(procs) = &self.procs {
            let value = proc_value(&interp, id.aspace);
            if procs
                .update(&id.pid.to_ne_bytes(), &value, MapFlags::ANY)
                .is_ok()
            {
                self.loaded.insert(id.pid, id.aspace);
            }
        }
        Some(Found::Readable(interp))
    }

    /// The interpreter files met, with their versions or why they were not
    /// read.
    pub fn summary(&self) -> String {
        if self.met.is_empty() {
            "none".to_string()
        } else {
            self.met.join(", ")
        }
    }

    /// A process exited: BPF forgets it.
    pub fn exited(&mut self, id: AspaceId) {
        if self.loaded.get(&id.pid) == Some(&id.aspace) {
            self.loaded.remove(&id.pid);
            if let Some(procs) = &self.procs {
                let _ = procs.delete(&id.pid.to_ne_bytes());
            }
        }
    }

    /// The interpreter of a process with these mappings.
    pub fn find(&mut self, pid: u32, maps: &[Mapping]) -> Option<Found> {
        // A file already known is named once by the maps reader: its
        // mappings in later processes come without a path.
        for m in maps.iter().filter(|m| m.exec && m.inode != 0) {
            let file = match self.files.get(&m.file_id()) {
                Some(known) => known.clone(),
                None if m.name().is_some_and(looks_like_python) => {
                    let path = m.path.clone().unwrap_or_default();
                    let name = m.name().unwrap_or_default().to_string();
                    let read = read_interpreter(&m.map_files(pid), &name).or_else(|err| {
                        let p = Path::new(&path);
                        let meta = std::fs::metadata(p).map_err(|_| err)?;
                        anyhow::ensure!(m.file_id().is_at(p, &meta), "replaced since");
                        read_interpreter(p, &name)
                    });
                    let state = match read {
                        Ok(f) => {
                            self.met.push(format!(
                                "{path} ({}.{})",
                                f.layout.version.0, f.layout.version.1
                            ));
                            Some(Ok(f))
                        }
                        // A launcher whose interpreter is in a libpython.
                        Err(e) if e.to_string() == NO_RUNTIME => None,
                        Err(e) => {
                            self.met.push(format!("{path} not read: {e:#}"));
                            // The frame's label: `Python 3.7`, or the cause.
                            let why = format!("{e:#}");
                            let short = why.split(" is not supported").next().unwrap_or(&why);
                            Some(Err(Arc::from(short)))
                        }
                    };
                    self.files.insert(m.file_id(), state.clone());
                    state
                }
                None => {
                    if m.path.is_some() {
                        self.files.insert(m.file_id(), None);
                    }
                    None
                }
            };
            let file = match file {
                None => continue,
                Some(Err(why)) => return Some(Found::Unreadable(why)),
                Some(Ok(file)) => file,
            };
            // The load segment this mapping is part of places the file.
            let (seg_off, seg_vaddr, _) = *file
                .segments
                .iter()
                .find(|(off, _, size)| m.offset >= *off && m.offset < off + size)?;
            let bias = m
                .start
                .wrapping_sub(m.offset - seg_off)
                .wrapping_sub(seg_vaddr);
            return Some(Found::Readable(Interpreter {
                layout: file.layout,
                runtime: bias.wrapping_add(file.runtime_vaddr),
            }));
        }
        None
    }
}

/// Reads an interpreter file: its version (`Py_Version`, 3.11+) and
/// `_PyRuntime`.
fn read_interpreter(path: &Path, name: &str) -> Result<InterpreterFile> {
    let data = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let elf = object::File::parse(&*data).context("not an ELF file")?;
    let symbol = |name: &str| {
        elf.dynamic_symbols()
            .chain(elf.symbols())
            .find(|s| s.name() == Ok(name))
            .map(|s| s.address())
    };
    let runtime_vaddr = symbol("_PyRuntime").context(NO_RUNTIME)?;
    let Some(version_at) = symbol("Py_Version") else {
        // Before 3.11: the file's name says which (python3.9,
        // libpython3.10.so.1.0).
        let v = name
            .trim_start_matches("lib")
            .trim_start_matches("python")
            .split(".so")
            .next()
            .unwrap_or("")
            .trim_end_matches('m');
        let minor = v.strip_prefix("3.").and_then(|m| m.parse::<u8>().ok());
        let layout = minor
            .and_then(|m| layout::of(3, m))
            .with_context(|| format!("Python {v} is not supported (3.8 to 3.13 are)"))?;
        return Ok(InterpreterFile {
            layout,
            runtime_vaddr,
            segments: load_segments(&elf),
        });
    };
    let segments = load_segments(&elf);
    // Py_Version is a constant in a loaded segment: read it from the file.
    let (off, vaddr, _) = segments
        .iter()
        .find(|(_, vaddr, size)| version_at >= *vaddr && version_at < vaddr + size)
        .context("Py_Version outside the file")?;
    let at = (version_at - vaddr + off) as usize;
    let hex = u32::from_le_bytes(
        data.get(at..at + 4)
            .context("Py_Version cut short")?
            .try_into()?,
    );
    let (major, minor) = ((hex >> 24) as u8, (hex >> 16) as u8);
    let layout = layout::of(major, minor)
        .with_context(|| format!("Python {major}.{minor} is not supported (3.8 to 3.13 are)"))?;
    Ok(InterpreterFile {
        layout,
        runtime_vaddr,
        segments,
    })
}

/// (file offset, virtual address, file size) of each loadable segment.
fn load_segments<'d>(elf: &object::File<'d, &'d [u8]>) -> Vec<(u64, u64, u64)> {
    elf.segments()
        .map(|s| {
            let (off, size) = s.file_range();
            (off, s.address(), size)
        })
        .collect()
}

/// Why a file is not an interpreter at all (a launcher).
const NO_RUNTIME: &str = "no _PyRuntime";

/// `struct python_proc` (bpf/profile.h) for a process.
pub fn proc_value(interp: &Interpreter, aspace: u32) -> Vec<u8> {
    let l = interp.layout;
    let mut v = vec![0u8; PROC_BYTES];
    v[0..8].copy_from_slice(&interp.runtime.to_ne_bytes());
    v[8..12].copy_from_slice(&aspace.to_ne_bytes());
    let opt = |o: Option<u16>| o.map_or(-1i16, |o| o as i16);
    let fields: [i16; 11] = [
        l.runtime_interp_head as i16,
        l.interp_threads_head as i16,
        l.thread_next as i16,
        l.thread_id as i16,
        l.thread_frame as i16,
        opt(l.cframe_frame),
        l.frame_code as i16,
        l.frame_previous as i16,
        l.frame_instr as i16,
        opt(l.frame_is_entry),
        opt(l.frame_owner),
    ];
    for (i, f) in fields.iter().enumerate() {
        v[12 + 2 * i..14 + 2 * i].copy_from_slice(&f.to_ne_bytes());
    }
    v
}

/// Bytes of `struct python_proc`.
pub const PROC_BYTES: usize = 40;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_value_holds_its_layout() {
        let interp = Interpreter {
            layout: layout::of(3, 12).unwrap(),
            runtime: 0x55_0000_1000,
        };
        let v = proc_value(&interp, 7);
        assert_eq!(v.len(), PROC_BYTES);
        assert_eq!(
            u64::from_ne_bytes(v[0..8].try_into().unwrap()),
            0x55_0000_1000
        );
        assert_eq!(u32::from_ne_bytes(v[8..12].try_into().unwrap()), 7);
        let field = |i: usize| i16::from_ne_bytes(v[12 + 2 * i..14 + 2 * i].try_into().unwrap());
        assert_eq!(field(1), 72, "interp threads head");
        assert_eq!(field(9), -1, "3.12 has no is_entry");
        assert_eq!(field(10), 70, "owner");
    }

    #[test]
    fn finds_the_interpreter_of_this_machines_python() {
        // Debian's python3.11, if present: a stripped executable whose
        // .dynsym still exports _PyRuntime and Py_Version.
        let p = Path::new("/usr/bin/python3.11");
        if !p.exists() {
            return;
        }
        let f = read_interpreter(p, "python3.11").unwrap();
        assert_eq!(f.layout.version, (3, 11));
        assert!(f.runtime_vaddr > 0);
    }
}
