//! Where CPython keeps what a frame walk needs, per minor version (x86-64,
//! release builds). Measured with `offsetof` against each version's own
//! headers (pyenv's 3.11.7, 3.12.1, 3.13.0 and Debian's 3.11: the same
//! within a minor version); `scripts/python-offsets.sh` prints them again.

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
    /// The instruction pointer points at the next instruction (3.13)
    /// rather than the last one run.
    pub instr_is_next: bool,
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
    instr_is_next: false,
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
    instr_is_next: false,
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
    instr_is_next: true,
};

/// Every version this build can read.
pub const KNOWN: &[Layout] = &[V3_11, V3_12, V3_13];

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
        assert!(of(3, 10).is_none());
        assert!(of(2, 7).is_none());
        for l in KNOWN {
            // The frame fields of one struct never overlap.
            let mut f = vec![l.frame_code, l.frame_previous, l.frame_instr];
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
