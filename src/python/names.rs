//! The symbolizer's side of Python frames: which interpreter each process
//! runs, what its code objects are called (read once per process and
//! address, forgotten when the process exits), and the frames that replace
//! its evaluator frames.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::code::{self, CodeInfo};
use super::{splice, Interpreter, RawPyFrame};
use crate::process::AspaceId;
use crate::profile::{Frame, FrameInfo, Symbol};

/// Code objects named at most, over all processes, before the cache starts
/// afresh (a long run that keeps creating functions: lambdas, exec).
const MAX_CODES: usize = 1 << 16;

/// The name of CPython's evaluator, whose frames Python frames replace.
pub const EVALUATOR: &str = "_PyEval_EvalFrameDefault";

/// Per process: its interpreter and its code objects' names.
#[derive(Default)]
pub struct PythonNames {
    interpreters: FxHashMap<AspaceId, Interpreter>,
    /// Processes running a CPython this build can't read: the name their
    /// evaluator frames get (`[python] Python 3.7 is not supported ...`).
    unreadable: FxHashMap<AspaceId, Arc<str>>,
    codes: FxHashMap<(AspaceId, u64), Option<Arc<CodeInfo>>>,
    /// Frames made, by (process, code, line): one frame per line.
    frames: FxHashMap<(AspaceId, u64, Option<u32>), Frame>,
    /// Python frames that could not be named (the process gone, or memory
    /// that did not read as a code object).
    pub unreadable_frames: u64,
    /// Samples of interpreters this build can't read.
    pub unreadable_interpreter_frames: u64,
}

impl PythonNames {
    /// A process runs this interpreter.
    pub fn remember(&mut self, id: AspaceId, found: super::Found) {
        match found {
            super::Found::Readable(interp) => {
                self.interpreters.insert(id, interp);
            }
            super::Found::Unreadable(why) => {
                self.unreadable
                    .insert(id, Arc::from(format!("[python] {why} (not read)")));
            }
        }
    }

    /// The name evaluator frames of this process get, if its interpreter
    /// can't be read; counts the `samples`.
    pub fn unreadable_name(&mut self, id: AspaceId, samples: u64) -> Option<Arc<str>> {
        let n = self.unreadable.get(&id).cloned();
        if n.is_some() {
            self.unreadable_interpreter_frames += samples;
        }
        n
    }

    /// A process exited: its code objects go (their addresses will be
    /// reused by another process's).
    pub fn exited(&mut self, id: AspaceId) {
        self.unreadable.remove(&id);
        if self.interpreters.remove(&id).is_some() {
            self.codes.retain(|(a, _), _| *a != id);
            self.frames.retain(|(a, _, _), _| *a != id);
        }
    }

    /// The frames replacing each evaluator call of a sample, innermost
    /// first; `intern` makes the names' symbols.
    pub fn groups(
        &mut self,
        id: AspaceId,
        raw: &[RawPyFrame],
        mut intern: impl FnMut(&str) -> Symbol,
    ) -> Vec<Vec<Frame>> {
        let Some(interp) = self.interpreters.get(&id).copied() else {
            return Vec::new();
        };
        if self.codes.len() > MAX_CODES {
            self.codes.clear();
            self.frames.clear();
        }
        // Up to 3.10 each frame is an evaluator call of its own.
        let calls: Vec<RawPyFrame>;
        let raw = if interp.layout.frames_are_calls {
            calls = raw
                .iter()
                .map(|f| RawPyFrame { entry: true, ..*f })
                .collect();
            &calls
        } else {
            raw
        };
        splice::groups(raw)
            .into_iter()
            .map(|g| {
                g.iter()
                    .map(|f| self.frame(id, &interp, f, &mut intern))
                    .collect()
            })
            .collect()
    }

    fn frame(
        &mut self,
        id: AspaceId,
        interp: &Interpreter,
        f: &RawPyFrame,
        intern: &mut impl FnMut(&str) -> Symbol,
    ) -> Frame {
        let l = interp.layout;
        let info = self
            .codes
            .entry((id, f.code))
            .or_insert_with(|| code::read_code(id.pid, l, f.code).map(Arc::new))
            .clone();
        let Some(info) = info else {
            self.unreadable_frames += 1;
            return Frame::named(intern("[python] <unreadable>"));
        };
        let line = code::instruction_index(l, f.code, f.instr)
            .and_then(|i| code::line(l, &info.linetable, info.first_line, i));
        self.frames
            .entry((id, f.code, line))
            .or_insert_with(|| {
                Frame::new(FrameInfo {
                    name: intern(&info.name),
                    module: Some(intern(info.file.rsplit('/').next().unwrap_or(&info.file))),
                    offset: None,
                    addr: None,
                    source: line.map(|l| (intern(&info.file), l)),
                    mapping: None,
                })
            })
            .clone()
    }
}
