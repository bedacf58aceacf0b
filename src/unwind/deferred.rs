//! Deferred unwinding: walks, in user space, the user stacks of samples
//! taken before their process's unwind tables were in the kernel.
//!
//! The BPF program copies such a sample's registers and the top of its user
//! stack (bpf/unwinder.bpf.h, `copy_user_stack`) instead of walking it with
//! frame pointers, which stop at the first function built without them (most
//! of a distribution's binaries). Once the unwinder thread has loaded the
//! process's tables, it walks the copy here with the very rows the BPF
//! walker uses, step for step the same rules (`walk_step` in
//! bpf/unwinder.bpf.h), so a sample comes out the same whether it was walked
//! in the kernel or here. Memory is read only from the copy: a frame whose
//! return address lies above it ends the walk, counted as stopped early.

use super::loader::RowView;
use super::table::{Kind, Row};

/// `MAX_STACK_DEPTH` in bpf/profile.h: frames a walk keeps at most.
pub const MAX_FRAMES: usize = 127;

/// The user registers a walk starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserRegs {
    /// Instruction pointer (the leaf).
    pub ip: u64,
    /// Stack pointer: the address of the copy's first byte.
    pub sp: u64,
    /// Frame pointer.
    pub bp: u64,
}

/// A deferred sample's user stack, on its way to be walked: its number
/// among the run's deferred samples, the process and address space it was
/// taken in, its registers and the copied stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferredStack {
    /// The sample's number ([`crate::sampler::DeferredSample::seq`]).
    pub seq: u64,
    /// Process id.
    pub tgid: u32,
    /// Address space.
    pub aspace: u32,
    /// The user registers.
    pub regs: UserRegs,
    /// The user stack from `regs.sp` up.
    pub stack: Vec<u8>,
}

/// The copied top of a user stack: `bytes` were at `base..`.
#[derive(Debug, Clone, Copy)]
pub struct StackCopy<'a> {
    /// Address of the first byte.
    pub base: u64,
    /// The bytes.
    pub bytes: &'a [u8],
}

impl StackCopy<'_> {
    /// The 8 bytes at `addr`, if the copy holds them.
    fn read(&self, addr: u64) -> Option<u64> {
        let off = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let end = off.checked_add(8)?;
        let b = self.bytes.get(off..end)?;
        Some(u64::from_ne_bytes(b.try_into().ok()?))
    }
}

/// One executable mapping of the process, as the BPF walker sees it.
#[derive(Debug, Clone, Copy)]
pub struct WalkMapping<'a> {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset = address - bias.
    pub bias: u64,
    /// The file's table; None: no CFI (frame pointers in `auto` mode).
    pub rows: Option<Rows<'a>>,
}

/// A file's table: rows in memory, or read in place from the kernel's
/// shards (a table is never copied out for a walk).
#[derive(Clone, Copy)]
pub enum Rows<'a> {
    /// Rows in memory.
    Slice(&'a [Row]),
    /// `len` rows from global index `start` of the shards.
    Shards {
        /// The mapped shards.
        view: &'a RowView<'a>,
        /// First row.
        start: u32,
        /// Rows.
        len: u32,
    },
}

impl std::fmt::Debug for Rows<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rows::Slice(r) => write!(f, "Rows::Slice({} rows)", r.len()),
            Rows::Shards { start, len, .. } => write!(f, "Rows::Shards({start}+{len})"),
        }
    }
}

impl Rows<'_> {
    /// The row that applies at file offset `pc`: the last whose pc is at
    /// or below it (a binary search, like the BPF walker's).
    fn find(&self, pc: u64) -> Option<Row> {
        let pc = u32::try_from(pc).ok()?;
        match *self {
            Rows::Slice(rows) => {
                let len = u32::try_from(rows.len()).ok()?;
                last_at_or_below(len, pc, |i| rows.get(i as usize).copied())
            }
            Rows::Shards { view, start, len } => {
                last_at_or_below(len, pc, |i| view.row(start.checked_add(i)?))
            }
        }
    }
}

/// Of `len` rows sorted by pc (`at` reads one), the last whose pc is at or
/// below `pc`; None before the first or when a row cannot be read.
fn last_at_or_below(len: u32, pc: u32, at: impl Fn(u32) -> Option<Row>) -> Option<Row> {
    // First index whose row's pc is above `pc`.
    let (mut lo, mut hi) = (0u32, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if at(mid)?.pc <= pc {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    at(lo.checked_sub(1)?)
}

/// How a frame without a table is stepped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// `--unwind auto`: frame pointers.
    FramePointers,
    /// `--unwind dwarf`: the walk stops.
    Stop,
}

/// A walked stack.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Walk {
    /// Addresses, leaf first (return addresses as read, like the kernel's).
    pub ips: Vec<u64>,
    /// Reached the outermost frame (else stopped early or cut).
    pub complete: bool,
    /// Stopped because the frame limit was reached.
    pub cut: bool,
    /// Why it stopped early, if it did (and was not cut).
    pub stopped: Option<Stop>,
}

/// Why a walk stopped early (as bpf/profile.h's `enum stop_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The stack (the copy) did not hold the next frame.
    BadRead,
    /// A frame pointer below the stack pointer.
    FpOffStack,
    /// Code without a usable rule.
    NoRule,
    /// A caller's frame not above its callee's.
    NotGrowing,
}

/// Offsets in the ucontext a signal trampoline finds at %rsp (see
/// bpf/unwinder.bpf.h).
const UC_RBP: u64 = 40 + 10 * 8;
const UC_RSP: u64 = 40 + 15 * 8;
const UC_RIP: u64 = 40 + 16 * 8;

struct State {
    ip: u64,
    sp: u64,
    bp: u64,
    after_signal: bool,
}

enum Step {
    Next,
    Complete,
    Stopped(Stop),
}

/// Reads code of the process: fills the buffer from an address, or false.
pub type CodeReader<'a> = &'a dyn Fn(u64, &mut [u8]) -> bool;

/// CPython's perf trampoline (see bpf/unwinder.bpf.h): its bytes, and where
/// a return address into it points.
const PY_TRAMPOLINE: [u8; 11] = [
    0x48, 0x83, 0xec, 0x08, 0xff, 0xd1, 0x48, 0x83, 0xc4, 0x08, 0xc3,
];
const PY_TRAMPOLINE_RA_OFFSET: u64 = 6;

/// Walks `stack` from `regs` with the process's `mappings` (sorted by
/// start, not overlapping); `code` reads the process's code where a frame
/// has no table (to recognise CPython's trampoline).
pub fn walk(
    regs: UserRegs,
    stack: &StackCopy<'_>,
    mappings: &[WalkMapping<'_>],
    fallback: Fallback,
    code: CodeReader<'_>,
) -> Walk {
    let mut st = State {
        ip: regs.ip,
        sp: regs.sp,
        bp: regs.bp,
        after_signal: false,
    };
    let mut out = Walk::default();
    loop {
        if st.ip == 0 {
            out.complete = true;
            return out;
        }
        if out.ips.len() >= MAX_FRAMES {
            out.cut = true;
            return out;
        }
        let n = out.ips.len();
        out.ips.push(st.ip);
        match step(&mut st, n, stack, mappings, fallback, code) {
            Step::Next => {}
            Step::Complete => {
                out.complete = true;
                return out;
            }
            Step::Stopped(why) => {
                out.stopped = Some(why);
                return out;
            }
        }
    }
}

/// The mapping holding `pc`.
fn find_mapping<'a>(mappings: &'a [WalkMapping<'a>], pc: u64) -> Option<&'a WalkMapping<'a>> {
    let i = mappings.partition_point(|m| m.start <= pc);
    let m = mappings.get(i.checked_sub(1)?)?;
    (pc < m.end).then_some(m)
}

fn fp_step(st: &mut State, stack: &StackCopy<'_>, other_stack: bool) -> Step {
    if st.bp == 0 {
        // _start clears %rbp: the outermost frame.
        return Step::Complete;
    }
    if st.bp < st.sp && !other_stack {
        return Step::Stopped(Stop::FpOffStack);
    }
    let (Some(bp), Some(ra)) = (stack.read(st.bp), stack.read(st.bp.wrapping_add(8))) else {
        return Step::Stopped(Stop::BadRead);
    };
    st.sp = st.bp + 16;
    st.bp = bp;
    st.ip = ra;
    st.after_signal = false;
    Step::Next
}

/// A step through CPython's trampoline, if `st.ip` returns into one.
fn py_trampoline_step(st: &mut State, stack: &StackCopy<'_>, code: CodeReader<'_>) -> bool {
    let mut bytes = [0u8; PY_TRAMPOLINE.len()];
    let Some(at) = st.ip.checked_sub(PY_TRAMPOLINE_RA_OFFSET) else {
        return false;
    };
    if !code(at, &mut bytes) || bytes != PY_TRAMPOLINE {
        return false;
    }
    let Some(ra) = stack.read(st.sp.wrapping_add(8)) else {
        return false;
    };
    st.sp += 16;
    st.ip = ra;
    st.after_signal = false;
    true
}

fn step(
    st: &mut State,
    n: usize,
    stack: &StackCopy<'_>,
    mappings: &[WalkMapping<'_>],
    fallback: Fallback,
    code: CodeReader<'_>,
) -> Step {
    let no_table = |st: &mut State| {
        if n > 0 && !st.after_signal && py_trampoline_step(st, stack, code) {
            return Step::Next;
        }
        match fallback {
            Fallback::FramePointers => fp_step(st, stack, false),
            Fallback::Stop => Step::Stopped(Stop::NoRule),
        }
    };
    // A return address points after its call: look up the call itself.
    let pc = if n == 0 || st.after_signal {
        st.ip
    } else {
        st.ip - 1
    };
    let Some(m) = find_mapping(mappings, pc) else {
        return no_table(st);
    };
    let Some(rows) = m.rows else {
        return no_table(st);
    };
    let row = match rows.find(pc.wrapping_sub(m.bias)) {
        Some(r) if !matches!(r.kind, Kind::None | Kind::Unsupported) => r,
        _ => return no_table(st),
    };
    let cfa = match row.kind {
        Kind::End => return Step::Complete,
        Kind::StackSwitch => return fp_step(st, stack, true),
        Kind::Signal => {
            let (Some(bp), Some(sp), Some(ip)) = (
                stack.read(st.sp.wrapping_add(UC_RBP)),
                stack.read(st.sp.wrapping_add(UC_RSP)),
                stack.read(st.sp.wrapping_add(UC_RIP)),
            ) else {
                return Step::Stopped(Stop::BadRead);
            };
            st.bp = bp;
            st.sp = sp;
            st.ip = ip;
            st.after_signal = true;
            return Step::Next;
        }
        Kind::CfaRsp => st.sp.wrapping_add_signed(i64::from(row.cfa_offset)),
        Kind::CfaRbp => st.bp.wrapping_add_signed(i64::from(row.cfa_offset)),
        Kind::Plt => {
            let extra = if (st.ip & 15) >= row.cfa_offset as u64 {
                8
            } else {
                0
            };
            st.sp.wrapping_add(8 + extra)
        }
        Kind::None | Kind::Unsupported => return Step::Stopped(Stop::NoRule),
    };
    // The stack grows down: each caller's frame is above its callee's.
    if cfa <= st.sp {
        return Step::Stopped(Stop::NotGrowing);
    }
    let Some(ra) = stack.read(cfa - 8) else {
        return Step::Stopped(Stop::BadRead);
    };
    let mut bp = st.bp;
    if row.rbp_offset8 != 0 {
        match stack.read(cfa.wrapping_add_signed(i64::from(row.rbp_offset8) * 8)) {
            Some(v) => bp = v,
            None => return Step::Stopped(Stop::BadRead),
        }
    }
    st.sp = cfa;
    st.bp = bp;
    st.ip = ra;
    st.after_signal = false;
    Step::Next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pc: u32, kind: Kind, cfa_offset: i16, rbp_offset8: i8) -> Row {
        Row {
            pc,
            kind,
            cfa_offset,
            rbp_offset8,
        }
    }

    /// A stack of u64 words at `base`.
    fn words(w: &[u64]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    const BASE: u64 = 0x7fff_0000;

    fn no_code(_: u64, _: &mut [u8]) -> bool {
        false
    }

    #[test]
    fn cpythons_perf_trampoline_is_stepped_through() {
        // eval (a table: CFA = rsp + 8) called from a trampoline at
        // 0x9000 (anonymous, no table), called from eval again.
        let rows = [
            row(0x1000, Kind::CfaRsp, 8, 0),
            row(0x2000, Kind::End, 0, 0),
        ];
        let maps = [
            WalkMapping {
                start: 0x9000,
                end: 0xa000,
                bias: 0,
                rows: None,
            },
            WalkMapping {
                start: 0x40_0000,
                end: 0x40_3000,
                bias: 0x40_0000,
                rows: Some(Rows::Slice(&rows)),
            },
        ];
        // eval's ra into the trampoline (0x9006), the trampoline's 8 bytes
        // of padding, its ra into eval, then eval's ra into _start.
        let bytes = words(&[0x9006, 0, 0x40_1050, 0x40_2001]);
        let stack = StackCopy {
            base: BASE,
            bytes: &bytes,
        };
        let regs = UserRegs {
            ip: 0x40_1010,
            sp: BASE,
            bp: 0,
        };
        let code = |addr: u64, buf: &mut [u8]| {
            if addr != 0x9000 {
                return false;
            }
            buf.copy_from_slice(&PY_TRAMPOLINE);
            true
        };
        let w = walk(regs, &stack, &maps, Fallback::Stop, &code);
        assert_eq!(w.ips, vec![0x40_1010, 0x9006, 0x40_1050, 0x40_2001]);
        assert!(w.complete);
        // Other code without a table is not taken for it.
        let w = walk(regs, &stack, &maps, Fallback::Stop, &no_code);
        assert_eq!(w.ips, vec![0x40_1010, 0x9006]);
    }

    #[test]
    fn walks_cfa_rows_through_a_file_without_frame_pointers() {
        // One file mapped at 0x40_0000 (bias 0x40_0000 - 0):
        //   leaf   [0x1000, 0x1100): CFA = rsp + 16 (one local, no rbp)
        //   caller [0x2000, 0x2100): CFA = rsp + 8
        //   _start [0x3000, ..):     outermost
        let rows = [
            row(0x1000, Kind::CfaRsp, 16, 0),
            row(0x2000, Kind::CfaRsp, 8, 0),
            row(0x3000, Kind::End, 0, 0),
        ];
        let maps = [WalkMapping {
            start: 0x40_0000,
            end: 0x41_0000,
            bias: 0x40_0000,
            rows: Some(Rows::Slice(&rows)),
        }];
        // leaf frame: [local][ra into caller]; caller frame: [ra into _start]
        let bytes = words(&[0xdead, 0x40_2010, 0x40_3005]);
        let stack = StackCopy {
            base: BASE,
            bytes: &bytes,
        };
        let regs = UserRegs {
            ip: 0x40_1010,
            sp: BASE,
            bp: 0x1234, // garbage: no frame pointers
        };
        let w = walk(regs, &stack, &maps, Fallback::FramePointers, &no_code);
        assert_eq!(w.ips, vec![0x40_1010, 0x40_2010, 0x40_3005]);
        assert!(w.complete);
    }

    #[test]
    fn a_frame_above_the_copy_stops_the_walk() {
        let rows = [row(0x1000, Kind::CfaRsp, 64, 0)];
        let maps = [WalkMapping {
            start: 0x40_0000,
            end: 0x41_0000,
            bias: 0x40_0000,
            rows: Some(Rows::Slice(&rows)),
        }];
        let bytes = words(&[0, 0]);
        let stack = StackCopy {
            base: BASE,
            bytes: &bytes,
        };
        let regs = UserRegs {
            ip: 0x40_1000,
            sp: BASE,
            bp: 0,
        };
        let w = walk(regs, &stack, &maps, Fallback::FramePointers, &no_code);
        assert_eq!(w.ips, vec![0x40_1000]);
        assert!(!w.complete && !w.cut);
        assert_eq!(w.stopped, Some(Stop::BadRead));
    }

    #[test]
    fn code_without_a_table_is_stepped_by_frame_pointers_in_auto_mode_only() {
        // No mapping at all (JIT code): [saved rbp = 0][ra]
        let bytes = words(&[0, 0x50_0000, 0]);
        let stack = StackCopy {
            base: BASE,
            bytes: &bytes,
        };
        let regs = UserRegs {
            ip: 0x60_0000,
            sp: BASE,
            bp: BASE,
        };
        let w = walk(regs, &stack, &[], Fallback::FramePointers, &no_code);
        assert_eq!(w.ips, vec![0x60_0000, 0x50_0000]);
        assert!(w.complete, "then rbp 0: the outermost frame");
        let w = walk(regs, &stack, &[], Fallback::Stop, &no_code);
        assert_eq!(w.ips, vec![0x60_0000]);
        assert!(!w.complete);
    }

    #[test]
    fn rbp_rules_restore_the_callers_frame_pointer() {
        // f: CFA = rbp + 16, rbp saved at CFA - 16; caller: CFA = rbp + 16.
        let rows = [
            row(0x1000, Kind::CfaRbp, 16, -2),
            row(0x2000, Kind::CfaRbp, 16, -2),
            row(0x3000, Kind::End, 0, 0),
        ];
        let maps = [WalkMapping {
            start: 0x1000,
            end: 0x4000,
            bias: 0,
            rows: Some(Rows::Slice(&rows)),
        }];
        // f's frame at BASE: [saved rbp -> BASE+16][ra 0x2005]
        // caller's at BASE+16: [saved rbp 0][ra 0x3001]
        let bytes = words(&[BASE + 16, 0x2005, 0, 0x3001]);
        let stack = StackCopy {
            base: BASE,
            bytes: &bytes,
        };
        let regs = UserRegs {
            ip: 0x1003,
            sp: BASE - 32,
            bp: BASE,
        };
        let w = walk(regs, &stack, &maps, Fallback::Stop, &no_code);
        assert_eq!(w.ips, vec![0x1003, 0x2005, 0x3001]);
        assert!(w.complete);
    }

    #[test]
    fn a_loop_is_cut_at_the_frame_limit() {
        // A frame that returns to itself: CFA = rsp + 8 with ra = itself
        // would move up; make every word the same return address.
        let rows = [row(0x1000, Kind::CfaRsp, 8, 0)];
        let maps = [WalkMapping {
            start: 0x1000,
            end: 0x2000,
            bias: 0,
            rows: Some(Rows::Slice(&rows)),
        }];
        let bytes = words(&[0x1100; 200]);
        let stack = StackCopy {
            base: BASE,
            bytes: &bytes,
        };
        let regs = UserRegs {
            ip: 0x1100,
            sp: BASE,
            bp: 0,
        };
        let w = walk(regs, &stack, &maps, Fallback::Stop, &no_code);
        assert_eq!(w.ips.len(), MAX_FRAMES);
        assert!(w.cut && !w.complete);
    }

    #[test]
    fn reads_outside_the_copy_are_refused() {
        let bytes = words(&[1, 2]);
        let s = StackCopy {
            base: BASE,
            bytes: &bytes,
        };
        assert_eq!(s.read(BASE + 8), Some(2));
        assert_eq!(s.read(BASE + 9), None);
        assert_eq!(s.read(BASE - 8), None);
        assert_eq!(s.read(u64::MAX - 3), None);
    }

    #[test]
    fn a_row_is_the_last_at_or_below_the_pc() {
        let rows = [
            row(0x1000, Kind::CfaRsp, 8, 0),
            row(0x1010, Kind::CfaRsp, 16, 0),
            row(0x1010, Kind::CfaRbp, 16, -2),
            row(0x1040, Kind::End, 0, 0),
        ];
        let r = Rows::Slice(&rows);
        assert_eq!(r.find(0xfff), None);
        assert_eq!(r.find(0x1000).map(|r| r.cfa_offset), Some(8));
        assert_eq!(r.find(0x100f).map(|r| r.cfa_offset), Some(8));
        // Equal pcs: the last one wins, as in the kernel's search.
        assert_eq!(r.find(0x1010).map(|r| r.kind), Some(Kind::CfaRbp));
        assert_eq!(r.find(0x5000).map(|r| r.kind), Some(Kind::End));
        assert_eq!(Rows::Slice(&[]).find(0x1000), None);
        assert_eq!(r.find(1 << 40), None, "beyond 32-bit offsets");
    }
}
