//! Python frames in a user stack: the interpreter's evaluator frames give
//! way to the Python functions they ran (see [`crate::python`]).

use super::{intern, Symbolizer};
use crate::process::AspaceId;
use crate::profile::{Frame, Stack};

impl Symbolizer {
    /// A user stack with its Python frames in place of the evaluator frames
    /// that ran them.
    pub(super) fn with_python(
        &mut self,
        user: Stack,
        id: AspaceId,
        raw: &[crate::python::RawPyFrame],
    ) -> Stack {
        let names = &mut self.names;
        let groups = self.python.groups(id, raw, |n| intern(names, n));
        if groups.is_empty() {
            return user;
        }
        match user {
            Stack::Frames(frames) => {
                Stack::Frames(crate::python::splice::splice(&frames, groups, |f| {
                    &**f == crate::python::names::EVALUATOR
                }))
            }
            // No native stack to place them in: the Python frames alone.
            _ => Stack::Frames(groups.into_iter().flatten().collect()),
        }
    }

    /// A process whose CPython this build can't read: its evaluator frames
    /// say so (`[python] Python 3.7 is not supported ...`), rather than
    /// pass for native code.
    pub(super) fn name_unreadable_python(
        &mut self,
        user: Stack,
        id: AspaceId,
        samples: u64,
    ) -> Stack {
        let Stack::Frames(frames) = &user else {
            return user;
        };
        if !frames
            .iter()
            .any(|f| &**f == crate::python::names::EVALUATOR)
        {
            return user;
        }
        let Some(name) = self.python.unreadable_name(id, samples) else {
            return user;
        };
        let sym = intern(&mut self.names, &name);
        Stack::Frames(
            frames
                .iter()
                .map(|f| {
                    if &**f == crate::python::names::EVALUATOR {
                        Frame::named(sym.clone())
                    } else {
                        f.clone()
                    }
                })
                .collect(),
        )
    }
}
