//! Where CPython keeps what a frame walk needs, per minor version (x86-64,
//! release builds). Measured with `offsetof` against each version's own
//! headers (pyenv's 3.8.18, 3.9.18, 3.10.13, 3.11.7, 3.12.1, 3.13.0 and
//! Debian's 3.11: the same within a minor version).
//!
//! Up to 3.10 a frame is a `PyFrameObject` (`f_back`, `f_code`, `f_lasti`),
//! each one C call of the evaluator; from 3.11 an `_PyInterpreterFrame`,
//! several per call.

/// The offsets of one CPython minor version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// (major, minor).
    pub version: (u8, u8),
    /// `_PyRuntime.interpreters.head`.
    pub runtime_interp_head: u16,
    /// `PyInterpreterState.threads.head`.
    pub interp_threads_head: u16,
    /// `PyThreadState.next`.
    pub thread_next: u16,
    /// `PyThreadState.thread_id`: its `pthread_t`, the thread's fs base.
    pub thread_id: u16,
    /// `PyThreadState.cframe` (3.11, 3.12) or `.current_frame` (3.13).
    pub thread_frame: u16,
    /// `_PyCFrame.current_frame`, where there is a `_PyCFrame`.
    pub cframe_frame: Option<u16>,
    /// `_PyInterpreterFrame.f_code` (`f_executable` from 3.13).
    pub frame_code: u16,
    /// `_PyInterpreterFrame.previous`.
    pub frame_previous: u16,
    /// `_PyInterpreterFrame.prev_instr` (`instr_ptr` from 3.13).
    pub frame_instr: u16,
    /// `_PyInterpreterFrame.is_entry` (3.11 only).
    pub frame_is_entry: Option<u16>,
    /// `_PyInterpreterFrame.owner` (a C-stack shim from 3.12 on).
    pub frame_owner: Option<u16>,
    /// `PyCodeObject.co_code_adaptive`: where the bytecode starts.
    pub code_adaptive: u16,
    /// `PyCodeObject.co_qualname`.
    pub code_qualname: u16,
    /// `PyCodeObject.co_filename`.
    pub code_filename: u16,
    /// `PyCodeObject.co_firstlineno`.
    pub code_firstlineno: u16,
    /// `PyCodeObject.co_linetable`.
    pub code_linetable: u16,
    /// `sizeof(PyASCIIObject)`: a compact ASCII string's characters.
    pub ascii_data: u16,
    /// `sizeof(PyCompactUnicodeObject)`: other compact strings' characters.
    pub compact_data: u16,
    /// What the frame's instruction field holds.
    pub instr: Instr,
    /// How the code object maps instructions to lines.
    pub lines: Lines,
    /// Each frame is one evaluator call (up to 3.10).
    pub frames_are_calls: bool,
}

/// What a frame's instruction field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instr {
    /// A pointer to the last instruction run (3.11, 3.12).
    LastPointer,
    /// A pointer to the next instruction to run (3.13).
    NextPointer,
    /// `f_lasti`, an `int`: the last instruction's byte offset (3.8, 3.9).
    LastiBytes,
    /// `f_lasti`, an `int`: the last instruction's index (3.10).
    LastiUnits,
}

/// The format of a code object's line table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// `co_lnotab` (up to 3.9).
    Lnotab,
    /// `co_linetable` of 3.10.
    Linetable310,
    /// The location table of 3.11 on.
    Locations,
}

const V3_11: Layout = Layout {
    version: (3, 11),
    runtime_interp_head: 40,
    interp_threads_head: 16,
    thread_next: 8,
    thread_id: 152,
    thread_frame: 56,
    cframe_frame: Some(8),
    frame_code: 32,
    frame_previous: 48,
    frame_instr: 56,
    frame_is_entry: Some(68),
    frame_owner: None,
    code_adaptive: 184,
    code_qualname: 128,
    code_filename: 112,
    code_firstlineno: 72,
    code_linetable: 136,
    ascii_data: 48,
    compact_data: 72,
    instr: Instr::LastPointer,
    lines: Lines::Locations,
    frames_are_calls: false,
};

const V3_12: Layout = Layout {
    version: (3, 12),
    runtime_interp_head: 40,
    interp_threads_head: 72,
    thread_next: 8,
    thread_id: 136,
    thread_frame: 56,
    cframe_frame: Some(0),
    frame_code: 0,
    frame_previous: 8,
    frame_instr: 56,
    frame_is_entry: None,
    frame_owner: Some(70),
    code_adaptive: 192,
    code_qualname: 128,
    code_filename: 112,
    code_firstlineno: 68,
    code_linetable: 136,
    ascii_data: 40,
    compact_data: 56,
    instr: Instr::LastPointer,
    lines: Lines::Locations,
    frames_are_calls: false,
};

const V3_13: Layout = Layout {
    version: (3, 13),
    runtime_interp_head: 632,
    interp_threads_head: 7344,
    thread_next: 8,
    thread_id: 152,
    thread_frame: 72,
    cframe_frame: None,
    frame_code: 0,
    frame_previous: 8,
    frame_instr: 56,
    frame_is_entry: None,
    frame_owner: Some(70),
    code_adaptive: 200,
    code_qualname: 128,
    code_filename: 112,
    code_firstlineno: 68,
    code_linetable: 136,
    ascii_data: 40,
    compact_data: 56,
    instr: Instr::NextPointer,
    lines: Lines::Locations,
    frames_are_calls: false,
};

/// 3.8 to 3.10: a `PyFrameObject` chain from `PyThreadState.frame`, no
/// qualified names (`co_name` stands for it).
const fn before_3_11(minor: u8, lasti: u16, instr: Instr, lines: Lines) -> Layout {
    Layout {
        version: (3, minor),
        runtime_interp_head: 32,
        interp_threads_head: 8,
        thread_next: 8,
        thread_id: 176,
        thread_frame: 24,
        cframe_frame: None,
        frame_code: 32,
        frame_previous: 24,
        frame_instr: lasti,
        frame_is_entry: None,
        frame_owner: None,
        code_adaptive: 0,
        code_qualname: 112,
        code_filename: 104,
        code_firstlineno: 40,
        code_linetable: 120,
        ascii_data: 48,
        compact_data: 72,
        instr,
        lines,
        frames_are_calls: true,
    }
}

const V3_8: Layout = before_3_11(8, 104, Instr::LastiBytes, Lines::Lnotab);
const V3_9: Layout = before_3_11(9, 104, Instr::LastiBytes, Lines::Lnotab);
const V3_10: Layout = before_3_11(10, 96, Instr::LastiUnits, Lines::Linetable310);

/// Every version this build can read.
pub const KNOWN: &[Layout] = &[V3_8, V3_9, V3_10, V3_11, V3_12, V3_13];

/// The layout of CPython `major.minor`, if known.
pub fn of(major: u8, minor: u8) -> Option<&'static Layout> {
    KNOWN.iter().find(|l| l.version == (major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_version_is_found_and_no_other() {
        assert_eq!(of(3, 12).unwrap().version, (3, 12));
        assert_eq!(of(3, 8).unwrap().frame_instr, 104);
        assert!(of(3, 7).is_none());
        assert!(of(2, 7).is_none());
        for l in KNOWN {
            // The frame fields of one struct never overlap.
            let mut f = vec![l.frame_code, l.frame_previous, l.frame_instr];
            if l.frames_are_calls {
                assert!(l.frame_is_entry.is_none() && l.frame_owner.is_none());
            }
            f.extend(l.frame_is_entry);
            f.extend(l.frame_owner);
            f.sort_unstable();
            f.dedup();
            assert_eq!(
                f.len(),
                3 + usize::from(l.frame_is_entry.is_some()) + usize::from(l.frame_owner.is_some())
            );
        }
    }
}
