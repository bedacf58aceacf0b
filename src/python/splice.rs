//! Puts Python frames into a native stack where they ran.
//!
//! Each call of `_PyEval_EvalFrameDefault` runs a group of Python frames
//! (from 3.11 a Python-to-Python call stays in the same C call); the walk in
//! BPF marks the outermost frame of each group. Going from the leaf, the
//! first evaluator frame is replaced by the innermost group, the next by the
//! next group, and so on, so C extension frames stay above the Python frame
//! that called them and the kernel above those.

use super::RawPyFrame;

/// The frames of each `_PyEval_EvalFrameDefault` call, innermost call
/// first, each innermost frame first.
pub fn groups(frames: &[RawPyFrame]) -> Vec<Vec<RawPyFrame>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    for f in frames {
        cur.push(*f);
        if f.entry {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `native` (leaf first) with each evaluator frame replaced by the next
/// group of `python` (innermost first). Groups left over (the native walk
/// stopped early) go at the root end, where they ran; evaluator frames left
/// over (frames the interpreter had not yet pushed) stay as they are.
pub fn splice<T: Clone>(
    native: &[T],
    python: Vec<Vec<T>>,
    is_evaluator: impl Fn(&T) -> bool,
) -> Vec<T> {
    let mut groups = python.into_iter();
    let mut out = Vec::with_capacity(native.len() + 8);
    for f in native {
        if is_evaluator(f) {
            if let Some(g) = groups.next() {
                out.extend(g);
                continue;
            }
        }
        out.push(f.clone());
    }
    for g in groups {
        out.extend(g);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(code: u64, entry: bool) -> RawPyFrame {
        RawPyFrame {
            code,
            instr: 0,
            entry,
        }
    }

    #[test]
    fn frames_are_grouped_by_evaluator_call() {
        let f = [
            raw(1, false),
            raw(2, true),
            raw(3, false),
            raw(4, true),
            raw(5, false),
        ];
        let g = groups(&f);
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].iter().map(|f| f.code).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(g[1].iter().map(|f| f.code).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(g[2].iter().map(|f| f.code).collect::<Vec<_>>(), [5]);
    }

    #[test]
    fn each_evaluator_frame_becomes_what_it_ran() {
        // leaf first: a C function called from Python, the evaluator, a C
        // extension calling back into Python, the evaluator again, main.
        let native = ["memcpy", "EVAL", "ext_call", "EVAL", "main"];
        let python = vec![vec!["leaf", "middle"], vec!["outer", "<module>"]];
        let s = splice(&native, python, |f| *f == "EVAL");
        assert_eq!(
            s,
            ["memcpy", "leaf", "middle", "ext_call", "outer", "<module>", "main"]
        );
    }

    #[test]
    fn what_does_not_pair_is_kept() {
        let s = splice(&["EVAL"], vec![vec!["a"], vec!["b"]], |f| *f == "EVAL");
        assert_eq!(s, ["a", "b"], "a group left over goes at the root end");
        let s = splice(&["EVAL", "EVAL"], vec![vec!["a"]], |f| *f == "EVAL");
        assert_eq!(s, ["a", "EVAL"]);
    }
}
