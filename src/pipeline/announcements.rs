//! What the sampling thread does with the sampler's process events: each
//! announced process's maps read (or named from its exit or its parent,
//! see [`ProcessMaps`]) and handed to the unwinder, the Python finder and,
//! in order, the processing thread.

use std::time::Duration;

use anyhow::Result;
use rustc_hash::FxHashSet;

use super::Seen;
use crate::process::announced::ProcessMaps;
use crate::process::AspaceId;
use crate::python::Interpreters;
use crate::sampler::{ProcessEvent, Sampler};
use crate::unwind::Unwinder;

/// Takes what the sampler announced within `wait`: processes sampled and
/// exited (see [`on_events`]), then the deferred stacks, after the
/// announcements of their processes so that the unwinder loads a process
/// before it walks its stacks.
pub(super) fn take_announcements(
    sampler: &mut Sampler,
    wait: Duration,
    spaces: &mut ProcessMaps,
    unwinder: Option<&Unwinder>,
    python: Option<&mut Interpreters>,
    seen: &mut Vec<Seen>,
) -> Result<bool> {
    let events = sampler.poll_process_events(wait)?;
    let any = !events.is_empty();
    on_events(events, spaces, unwinder, python, seen, &|host, aspace| {
        sampler.is_current(host, aspace)
    });
    let (forget, learnt) = spaces.take_learnt();
    if forget || !learnt.is_empty() {
        sampler.know_versions(forget, &learnt)?;
    }
    if let Some(u) = unwinder {
        u.stacks(sampler.take_stacks());
    }
    Ok(any)
}

/// Reads the maps of each process announced, at once (a short-lived
/// process may be gone by the time the processing thread gets to it), and
/// hands them to the unwinder; one read, shared with the process model. A
/// process that exited already (its exit in the same batch), was gone
/// before its read, or was read while it was still mapping its libraries
/// is named from the mappings its exit tells.
fn on_events(
    events: Vec<ProcessEvent>,
    spaces: &mut ProcessMaps,
    unwinder: Option<&Unwinder>,
    mut python: Option<&mut Interpreters>,
    seen: &mut Vec<Seen>,
    is_current: &dyn Fn(u32, u32) -> bool,
) {
    // Exited already, telling its mappings: no read (it would find the
    // process gone).
    let told_at_exit: FxHashSet<AspaceId> = events
        .iter()
        .filter_map(|e| match e {
            ProcessEvent::Exited(id, Some(_)) => Some(*id),
            _ => None,
        })
        .collect();
    // The urgent first (in order), then the rest (in order): an event of
    // one address space stays after the ones before it.
    let (mut events, rest): (Vec<_>, Vec<_>) = events
        .into_iter()
        .partition(|e| matches!(e, ProcessEvent::Sampled { at_once: true, .. }));
    events.extend(rest);
    for event in events {
        match event {
            ProcessEvent::Sampled { id, .. } if told_at_exit.contains(&id) => spaces.skip_read(id),
            ProcessEvent::Sampled {
                id,
                host_tgid,
                parent,
                ..
            } => {
                // Read late, the maps may be of an exec that replaced this
                // address space: checked before and after (an exec in
                // between reads as gone; its exit, if it tells, names it).
                let maps = if is_current(host_tgid, id.aspace) {
                    match spaces.read_announced(id) {
                        Some(_) if !is_current(host_tgid, id.aspace) => {
                            spaces.replaced(id);
                            None
                        }
                        read => read,
                    }
                } else {
                    spaces.replaced(id);
                    None
                };
                // A forked child that exec'd or exited since: what its
                // parent had, copied at the fork.
                let maps = match maps {
                    Some(m) if !m.is_empty() => Some(m),
                    other => parent.and_then(|p| spaces.inherit(id, p)).or(other),
                };
                if let (Some(u), Some(m)) = (unwinder, &maps) {
                    u.process(id, m.clone());
                }
                let interp = match (python.as_deref_mut(), &maps) {
                    (Some(p), Some(m)) => p.seen(id, m),
                    _ => None,
                };
                seen.push(Seen::Sampled(id, maps, interp));
            }
            ProcessEvent::Exited(id, told) => {
                if let Some(maps) = spaces.exited(id, told.as_deref()) {
                    // Its deferred samples are still to be walked.
                    if let Some(u) = unwinder {
                        u.process(id, maps.clone());
                    }
                    seen.push(Seen::Sampled(id, Some(maps), None));
                }
                if let Some(u) = unwinder {
                    u.exited(id);
                }
                if let Some(p) = python.as_deref_mut() {
                    p.exited(id);
                }
                seen.push(Seen::Exited(id));
            }
        }
    }
}
