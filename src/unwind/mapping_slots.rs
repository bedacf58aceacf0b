//! The owner of `unwind_procs` and `unwind_mapping_slots`: where BPF finds
//! each loaded process's executable mappings.
//!
//! Every loaded process holds a range of one shared array of mapping
//! slots, and `unwind_procs` says which range (with the address space it
//! belongs to). Loading a process is one batch write of its few mappings
//! and one 16-byte map write; under process churn the earlier design (a
//! fixed 8 KB hash value per process, allocated, copied and freed by the
//! kernel on every load and exit) was a third of the unwinder thread's CPU.
//!
//! A range given back is reused only after [`QUARANTINE`]: a walk in
//! flight on another CPU that looked the process up just before it left
//! must not read another process's mappings.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};
use rustc_hash::FxHashMap;

use super::ranges::Ranges;

/// Mapping slots in all (bpf/profile.h's `UNWIND_MAPPING_SLOTS`).
pub const SLOTS: u32 = 65536;
/// Mappings kept per process (bpf/profile.h's `UNWIND_PROC_MAPPINGS`).
pub const PROC_MAPPINGS: usize = 256;
/// Bytes of `struct mapping_info`.
pub const MAPPING_INFO_BYTES: usize = 32;
/// How long a range given back waits before it is reused: a walk takes
/// microseconds, with interrupts off.
const QUARANTINE: Duration = Duration::from_millis(100);

/// See the module documentation.
pub struct MappingSlots {
    /// `unwind_mapping_slots`.
    slots: MapHandle,
    /// `unwind_procs`: tgid -> `struct proc_entry`.
    procs: MapHandle,
    ranges: Ranges,
    /// Each loaded pid's range (start, len).
    held: FxHashMap<u32, (u32, u32)>,
    /// Ranges given back, oldest first, with when.
    retired: VecDeque<(Instant, u32, u32)>,
    /// Processes that found no room (loaded as not loaded: their stacks
    /// are copied and walked in user space).
    pub full: u64,
}

impl MappingSlots {
    /// Owns the two maps.
    pub fn new(slots: MapHandle, procs: MapHandle) -> MappingSlots {
        MappingSlots {
            slots,
            procs,
            ranges: Ranges::new(SLOTS),
            held: FxHashMap::default(),
            retired: VecDeque::new(),
            full: 0,
        }
    }

    /// Slots in use, retired ones included.
    pub fn used(&self) -> u64 {
        self.ranges.used()
    }

    /// Gives BPF the executable mappings of `pid` in address space
    /// `aspace` (sorted by start; at most [`PROC_MAPPINGS`] are kept),
    /// replacing what the pid had. False: no room, and the pid is left
    /// unloaded.
    pub fn load(
        &mut self,
        pid: u32,
        aspace: u32,
        infos: &[[u8; MAPPING_INFO_BYTES]],
    ) -> Result<bool> {
        let now = Instant::now();
        self.reclaim(now);
        let n = infos.len().min(PROC_MAPPINGS) as u32;
        let Some(start) = self.ranges.alloc(n) else {
            self.full += 1;
            self.unload(pid);
            return Ok(false);
        };
        if let Err(e) = self.write(pid, aspace, start, &infos[..n as usize]) {
            self.ranges.release(start, n);
            return Err(e);
        }
        if let Some((s, len)) = self.held.insert(pid, (start, n)) {
            self.retired.push_back((now, s, len));
        }
        Ok(true)
    }

    /// The pid's mappings leave BPF; its range is reused after the
    /// quarantine.
    pub fn unload(&mut self, pid: u32) {
        if let Some((s, len)) = self.held.remove(&pid) {
            let _ = self.procs.delete(&pid.to_ne_bytes());
            self.retired.push_back((Instant::now(), s, len));
        }
    }

    fn write(
        &self,
        pid: u32,
        aspace: u32,
        start: u32,
        infos: &[[u8; MAPPING_INFO_BYTES]],
    ) -> Result<()> {
        if !infos.is_empty() {
            let keys: Vec<u8> = (start..start + infos.len() as u32)
                .flat_map(u32::to_ne_bytes)
                .collect();
            let values = infos.concat();
            self.slots
                .update_batch(
                    &keys,
                    &values,
                    infos.len() as u32,
                    MapFlags::ANY,
                    MapFlags::ANY,
                )
                .context("failed to give the unwinder a process's mappings")?;
        }
        self.procs
            .update(
                &pid.to_ne_bytes(),
                &proc_entry(aspace, infos.len() as u32, start),
                MapFlags::ANY,
            )
            .context("failed to mark a process loaded")
    }

    /// Gives back the retired ranges whose quarantine is over.
    fn reclaim(&mut self, now: Instant) {
        while let Some(&(at, s, len)) = self.retired.front() {
            if now.duration_since(at) < QUARANTINE {
                break;
            }
            self.retired.pop_front();
            self.ranges.release(s, len);
        }
    }
}

/// `struct proc_entry`.
fn proc_entry(aspace: u32, count: u32, start: u32) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[0..4].copy_from_slice(&aspace.to_ne_bytes());
    v[4..8].copy_from_slice(&count.to_ne_bytes());
    v[8..12].copy_from_slice(&start.to_ne_bytes());
    v
}

/// `struct mapping_info`: the mapping [start, end), its bias and table.
pub fn mapping_info(
    range: (u64, u64),
    bias: u64,
    row_start: u32,
    row_count: u32,
) -> [u8; MAPPING_INFO_BYTES] {
    let mut v = [0u8; MAPPING_INFO_BYTES];
    v[0..8].copy_from_slice(&bias.to_ne_bytes());
    v[8..12].copy_from_slice(&row_start.to_ne_bytes());
    v[12..16].copy_from_slice(&row_count.to_ne_bytes());
    v[16..24].copy_from_slice(&range.0.to_ne_bytes());
    v[24..32].copy_from_slice(&range.1.to_ne_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use libbpf_rs::libbpf_sys;
    use libbpf_rs::MapType;

    /// Slots over fresh maps shaped as the BPF object declares them, and
    /// handles to read them back, if this process may create maps (root);
    /// None otherwise.
    fn fixture() -> Option<(MappingSlots, MapHandle, MapHandle)> {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            ..Default::default()
        };
        let slots = MapHandle::create(
            MapType::Array,
            Some("test_slots"),
            4,
            MAPPING_INFO_BYTES as u32,
            SLOTS,
            &opts,
        );
        let procs = MapHandle::create(MapType::Hash, Some("test_procs"), 4, 16, 1024, &opts);
        match (slots, procs) {
            (Ok(s), Ok(p)) => {
                let m = MappingSlots::new(
                    MapHandle::try_from(&s).unwrap(),
                    MapHandle::try_from(&p).unwrap(),
                );
                Some((m, s, p))
            }
            _ if std::env::var_os("RS_PROFILE_REQUIRE_BPF").is_some() => {
                panic!("cannot create BPF maps, and RS_PROFILE_REQUIRE_BPF is set")
            }
            _ => None,
        }
    }

    fn entry(procs: &MapHandle, pid: u32) -> Option<(u32, u32, u32)> {
        let v = procs.lookup(&pid.to_ne_bytes(), MapFlags::ANY).ok()??;
        let w = |i: usize| u32::from_ne_bytes(v[i..i + 4].try_into().unwrap());
        Some((w(0), w(4), w(8)))
    }

    fn slot_start(slots: &MapHandle, slot: u32) -> u64 {
        let v = slots
            .lookup(&slot.to_ne_bytes(), MapFlags::ANY)
            .unwrap()
            .unwrap();
        u64::from_ne_bytes(v[16..24].try_into().unwrap())
    }

    fn infos(n: u64) -> Vec<[u8; MAPPING_INFO_BYTES]> {
        (0..n)
            .map(|i| mapping_info((i << 20, (i << 20) + 4096), 0, i as u32, 1))
            .collect()
    }

    #[test]
    fn a_process_is_a_range_of_slots_and_an_entry() {
        let Some((mut m, slots, procs)) = fixture() else {
            return;
        };
        assert!(m.load(7, 3, &infos(5)).unwrap());
        assert!(m.load(8, 1, &infos(300)).unwrap());
        assert_eq!(entry(&procs, 7), Some((3, 5, 0)));
        assert_eq!(entry(&procs, 8), Some((1, 256, 5)), "at most 256 kept");
        assert_eq!(slot_start(&slots, 4), 4 << 20);
        assert_eq!(slot_start(&slots, 5 + 255), 255 << 20);
        assert_eq!(m.used(), 261);
    }

    #[test]
    fn a_range_given_back_is_not_reused_during_its_quarantine() {
        let Some((mut m, _, procs)) = fixture() else {
            return;
        };
        assert!(m.load(7, 1, &infos(4)).unwrap());
        m.unload(7);
        assert_eq!(entry(&procs, 7), None, "gone from BPF at once");
        // A new process now must not get the range a walk may still read.
        assert!(m.load(9, 1, &infos(4)).unwrap());
        assert_eq!(entry(&procs, 9), Some((1, 4, 4)));
        // Once the quarantine is over, the range is free again.
        m.reclaim(Instant::now() + QUARANTINE);
        assert!(m.load(10, 1, &infos(4)).unwrap());
        assert_eq!(entry(&procs, 10), Some((1, 4, 0)));
        // A reload of a pid replaces its entry; its old range retires.
        assert!(m.load(9, 2, &infos(2)).unwrap());
        assert_eq!(entry(&procs, 9), Some((2, 2, 8)));
    }

    #[test]
    fn a_full_space_leaves_the_process_unloaded() {
        let Some((mut m, _, procs)) = fixture() else {
            return;
        };
        assert!(m.load(1, 1, &infos(5)).unwrap());
        let mut pid = 2;
        while m.used() + 256 <= u64::from(SLOTS) {
            assert!(m.load(pid, 1, &infos(256)).unwrap());
            pid += 1;
        }
        assert!(
            m.load(pid, 1, &infos(200)).unwrap(),
            "what is left still serves"
        );
        assert!(entry(&procs, 1).is_some());
        // Reloading pid 1 with more than is free: no room, so it is
        // unloaded rather than left with its old mappings.
        assert!(!m.load(1, 2, &infos(256)).unwrap());
        assert_eq!(entry(&procs, 1), None);
        assert_eq!(m.full, 1);
    }
}
