//! The owner of the unwind tables' BPF map (`unwind_shards`); the
//! processes' mappings have their own owner ([`super::mapping_slots`]).
//! Nothing else writes them.
//!
//! Tables live in one global row space cut into shards of
//! `UNWIND_SHARD_ROWS` rows; a shard is an mmap'able BPF array created when
//! the space first reaches it, so kernel memory grows with what is loaded,
//! up to the budget. A file's table is a contiguous range of rows; ranges
//! freed by evicted tables are reused first-fit.

use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{libbpf_sys, MapCore, MapFlags, MapHandle, MapType};

use super::ranges::Ranges;
use super::table::{Kind, Row};

/// Rows per shard and its shift (bpf/profile.h's `unwind_consts`).
pub const SHARD_SHIFT: u32 = 17;
/// Rows per shard.
pub const SHARD_ROWS: u32 = 1 << SHARD_SHIFT;
/// Shards the outer map can hold.
pub const MAX_SHARDS: u32 = 8192;
/// Bytes per row (`struct unwind_row`).
pub const ROW_BYTES: usize = 8;

/// The maps, as owned handles (duplicated from the skeleton's).
pub struct UnwindMaps {
    /// `unwind_shards`: array of row arrays.
    pub shards: MapHandle,
    /// `unwind_mapping_slots`: every loaded process's mappings.
    pub mapping_slots: MapHandle,
    /// `unwind_procs`: tgid -> loaded address space and its slots.
    pub procs: MapHandle,
}

/// One shard. Its rows are mapped into our memory
/// when a table is written or read (mapping a shard inserts all its pages:
/// far too slow to do per walk), and unmapped again once unused for a
/// while ([`RowSpace::unmap_idle`]), so tables nobody walks in user space
/// are kernel memory, not the profiler's RSS.
///
/// A shard is held by the outer map alone, by its id: holding each one's
/// file descriptor too made a run's open files grow with its tables (a
/// busy machine's soak held 111 BPF map descriptors, 221 open files in
/// all, against a budget of 256 shards). A descriptor is taken by id for
/// as long as it takes to map the rows.
struct Shard {
    id: u32,
    mapped: RefCell<Option<MappedRows>>,
    /// Mapped rows used since the last `unmap_idle`.
    used: Cell<bool>,
}

/// A shard's rows, mapped for writing; unmapped when dropped.
struct MappedRows {
    rows: NonNull<u8>,
}

impl Drop for MappedRows {
    fn drop(&mut self) {
        // SAFETY: mapped in `Shard::map_rows` with this length, unmapped once.
        unsafe { libc::munmap(self.rows.as_ptr().cast(), SHARD_ROWS as usize * ROW_BYTES) };
    }
}

impl MappedRows {
    fn read(&self, slot: u32) -> Row {
        assert!(slot < SHARD_ROWS);
        let mut b = [0u8; ROW_BYTES];
        // SAFETY: slot < SHARD_ROWS, so the 8 bytes are inside the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.rows.as_ptr().add(slot as usize * ROW_BYTES),
                b.as_mut_ptr(),
                ROW_BYTES,
            )
        };
        Row {
            pc: u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
            cfa_offset: i16::from_ne_bytes([b[4], b[5]]),
            // A kind this build does not know reads as "no CFI here".
            kind: Kind::from_u8(b[6]).unwrap_or(Kind::None),
            rbp_offset8: b[7] as i8,
        }
    }

    fn write(&self, slot: u32, row: &Row) {
        let mut bytes = [0u8; ROW_BYTES];
        bytes[0..4].copy_from_slice(&row.pc.to_ne_bytes());
        bytes[4..6].copy_from_slice(&row.cfa_offset.to_ne_bytes());
        bytes[6] = row.kind as u8;
        bytes[7] = row.rbp_offset8 as u8;
        assert!(slot < SHARD_ROWS);
        // SAFETY: slot < SHARD_ROWS, so the 8 bytes are inside the mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.rows.as_ptr().add(slot as usize * ROW_BYTES),
                ROW_BYTES,
            )
        };
    }
}

impl Shard {
    /// Creates shard `index` and puts it in the outer map.
    fn create(index: u32, outer: &MapHandle) -> Result<Shard> {
        let opts = libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_sys::bpf_map_create_opts>() as _,
            map_flags: libbpf_sys::BPF_F_MMAPABLE,
            ..Default::default()
        };
        let map = MapHandle::create(
            MapType::Array,
            Some(format!("unwind_rows{index}")),
            4,
            ROW_BYTES as u32,
            SHARD_ROWS,
            &opts,
        )
        .context("failed to create an unwind table shard")?;
        let fd = map.as_fd().as_raw_fd() as u32;
        outer
            .update(&index.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .context("failed to add an unwind table shard")?;
        let id = map
            .info()
            .context("failed to read an unwind table shard's id")?
            .info
            .id;
        Ok(Shard {
            id,
            mapped: RefCell::new(None),
            used: Cell::new(false),
        })
    }

    /// Runs `f` on the shard's rows, mapping them first if they are not.
    fn with_rows<T>(&self, f: impl FnOnce(&MappedRows) -> T) -> Result<T> {
        let mut mapped = self.mapped.borrow_mut();
        if mapped.is_none() {
            *mapped = Some(self.map_rows()?);
        }
        self.used.set(true);
        Ok(f(mapped.as_ref().expect("mapped above")))
    }

    /// Maps the shard's rows for writing.
    fn map_rows(&self) -> Result<MappedRows> {
        // SAFETY: a plain syscall wrapper; a negative result is an error.
        let raw = unsafe { libbpf_sys::bpf_map_get_fd_by_id(self.id) };
        if raw < 0 {
            bail!(
                "failed to open an unwind table shard: {}",
                std::io::Error::from_raw_os_error(-raw)
            );
        }
        // SAFETY: a new descriptor nobody else owns; closed when dropped
        // (the mapping keeps the map alive).
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let len = SHARD_ROWS as usize * ROW_BYTES;
        // SAFETY: a shared mapping of the whole array map, which the kernel
        // allows for BPF_F_MMAPABLE arrays; checked for failure below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!(
                "failed to map an unwind table shard: {}",
                std::io::Error::last_os_error()
            );
        }
        let rows = NonNull::new(ptr.cast()).ok_or_else(|| anyhow!("mmap returned null"))?;
        Ok(MappedRows { rows })
    }
}

/// The global row space.
pub struct RowSpace {
    shards: Vec<Shard>,
    /// The rows the budget allows, as ranges.
    ranges: Ranges,
}

impl RowSpace {
    /// A space of at most `budget_bytes` of rows.
    pub fn new(budget_bytes: u64) -> RowSpace {
        let rows =
            (budget_bytes / ROW_BYTES as u64).min(u64::from(MAX_SHARDS) * u64::from(SHARD_ROWS));
        RowSpace {
            shards: Vec::new(),
            ranges: Ranges::new(rows as u32),
        }
    }

    /// Bytes of shards created so far.
    pub fn bytes(&self) -> u64 {
        self.shards.len() as u64 * u64::from(SHARD_ROWS) * ROW_BYTES as u64
    }

    /// Rows in use.
    pub fn used(&self) -> u64 {
        self.ranges.used()
    }

    /// A range of `n` rows, or None when the budget has no room.
    pub fn alloc(&mut self, n: u32) -> Option<u32> {
        self.ranges.alloc(n)
    }

    /// Gives a range back.
    pub fn release(&mut self, start: u32, n: u32) {
        self.ranges.release(start, n)
    }

    /// A read-only view of the rows, for walks done in user space: rows
    /// are read in place (a table is never copied out).
    pub fn view(&self) -> RowView<'_> {
        RowView { space: self }
    }

    /// Unmaps the shards not used since the last call.
    pub fn unmap_idle(&self) {
        for s in &self.shards {
            if !s.used.replace(false) {
                s.mapped.borrow_mut().take();
            }
        }
    }

    /// Unmaps every shard: after tables were written, so that what was
    /// written is kernel memory, not the profiler's RSS (a busy machine's
    /// first tables are tens of MB).
    pub fn unmap_all(&self) {
        for s in &self.shards {
            s.used.set(false);
            s.mapped.borrow_mut().take();
        }
    }

    /// Writes `rows` at `start`, creating shards (and putting them in the
    /// outer map) as needed.
    pub fn write(&mut self, outer: &MapHandle, start: u32, rows: &[Row]) -> Result<()> {
        for (i, row) in rows.iter().enumerate() {
            let index = start + i as u32;
            let shard = (index >> SHARD_SHIFT) as usize;
            while self.shards.len() <= shard {
                let n = self.shards.len() as u32;
                self.shards.push(Shard::create(n, outer)?);
            }
            self.shards[shard].with_rows(|m| m.write(index & (SHARD_ROWS - 1), row))?;
        }
        Ok(())
    }
}

/// See [`RowSpace::view`].
pub struct RowView<'a> {
    space: &'a RowSpace,
}

impl RowView<'_> {
    /// The row at global index `index`, or None past the shards (or if
    /// the shard cannot be mapped).
    pub fn row(&self, index: u32) -> Option<Row> {
        let shard = self.space.shards.get((index >> SHARD_SHIFT) as usize)?;
        shard.with_rows(|m| m.read(index & (SHARD_ROWS - 1))).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_the_rows() {
        let mut s = RowSpace::new(1 << 20);
        assert_eq!(s.alloc((1 << 20) / 8), Some(0), "the whole budget");
        assert_eq!(s.alloc(1), None, "over budget");
    }
}
