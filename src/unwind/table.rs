//! Unwind tables: an executable file's call frame information (`.eh_frame`,
//! or `.debug_frame` where there is none), evaluated once in user space into
//! a compact sorted table that the BPF walker can binary-search.
//!
//! gimli evaluates the CFI (every FDE's rows); what is kept of each row is
//! what an x86-64 walk needs: how to find the CFA (%rsp or %rbp plus an
//! offset, the PLT expression, a signal frame), where %rbp was saved, and
//! whether this is the outermost frame (return address undefined). The
//! return address is always at CFA - 8 on x86-64. Addresses are file
//! offsets, so one table serves every process that maps the file, wherever
//! it is mapped.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use gimli::{
    BaseAddresses, CfaRule, CieOrFde, EhFrame, EndianSlice, LittleEndian, Register, RegisterRule,
    UnwindContext, UnwindContextStorage, UnwindSection, UnwindTableRow,
};
use object::read::ReadCache;
use object::{Object, ObjectSection, ObjectSegment};

/// How a row finds the caller's frame. The numbers are bpf/profile.h's
/// `enum unwind_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// No CFI covers this address (a gap between functions).
    None = 0,
    /// CFA = %rsp + offset.
    CfaRsp = 1,
    /// CFA = %rbp + offset.
    CfaRbp = 2,
    /// A PLT stub: CFA = %rsp + 8, + 8 more once %rip & 15 reaches the
    /// threshold kept in `cfa_offset` (the expression every linker emits).
    Plt = 3,
    /// A signal trampoline (`__restore_rt`): the interrupted registers are
    /// in the ucontext at %rsp.
    Signal = 4,
    /// The outermost frame (`_start`, `clone`): the return address is
    /// undefined, the stack is complete.
    End = 5,
    /// CFI the walker can't evaluate (an unusual expression).
    Unsupported = 6,
    /// A function that runs its callee on another stack (Go's
    /// `runtime.systemstack` and `runtime.mcall`, which switch to the g0
    /// stack): its CFI leads to the top of that stack, not to its caller.
    /// The walk steps it by frame pointers instead, which Go keeps across
    /// the switch, and accepts a frame pointer on the other stack.
    StackSwitch = 7,
}

/// One row: from `pc` (a file offset) up to the next row's `pc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Row {
    /// First file offset the row applies to.
    pub pc: u32,
    /// How to find the CFA.
    pub kind: Kind,
    /// Offset added to the CFA register (the PLT threshold for `Plt`).
    pub cfa_offset: i16,
    /// Where %rbp was saved, in 8-byte units from the CFA; 0: not saved
    /// (it keeps its value).
    pub rbp_offset8: i8,
}

impl Kind {
    /// The kind a stored byte names.
    pub fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            0 => Kind::None,
            1 => Kind::CfaRsp,
            2 => Kind::CfaRbp,
            3 => Kind::Plt,
            4 => Kind::Signal,
            5 => Kind::End,
            6 => Kind::Unsupported,
            7 => Kind::StackSwitch,
            _ => return None,
        })
    }
}

impl Row {
    fn same_rule(&self, other: &Row) -> bool {
        self.kind == other.kind
            && self.cfa_offset == other.cfa_offset
            && self.rbp_offset8 == other.rbp_offset8
    }
}

/// An executable file's unwind table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnwindTable {
    /// Sorted by `pc`, no two neighbours with the same rule.
    pub rows: Vec<Row>,
    /// Which section the rows came from.
    pub source: &'static str,
}

const RSP: Register = Register(7);
const RBP: Register = Register(6);
const RA: Register = Register(16);

/// A loadable, executable segment: file offsets and addresses.
#[derive(Debug, Clone, Copy)]
struct ExecSegment {
    address: u64,
    file_offset: u64,
    size: u64,
}

impl ExecSegment {
    fn file_offset_of(&self, address: u64) -> Option<u64> {
        (address >= self.address && address - self.address < self.size)
            .then(|| address - self.address + self.file_offset)
    }
}

/// Builds the unwind table of the ELF file at `path`. Only the CFI sections
/// and headers are read, not the whole file.
pub fn build(path: &Path) -> Result<UnwindTable> {
    let file = File::open(path).with_context(|| format!("failed to open {}", path.display()))?;
    build_from(file, path)
}

/// [`build`] from a file already open (`path` names it in errors).
pub fn build_from(file: File, path: &Path) -> Result<UnwindTable> {
    let cache = ReadCache::new(file);
    let elf = object::File::parse(&cache)
        .with_context(|| format!("{}: not an ELF file", path.display()))?;
    if elf.architecture() != object::Architecture::X86_64 {
        bail!("{}: not an x86-64 file", path.display());
    }
    let segments: Vec<ExecSegment> = elf
        .segments()
        .filter(|s| s.permissions().executable())
        .filter_map(|s| {
            let (file_offset, size) = s.file_range();
            Some(ExecSegment {
                address: s.address(),
                file_offset,
                size,
            })
            .filter(|_| size > 0)
        })
        .collect();
    let to_offset = |address: u64| segments.iter().find_map(|s| s.file_offset_of(address));

    // Go compresses its .debug_frame (SHF_COMPRESSED).
    let section = |name: &str| {
        elf.section_by_name(name)
            .and_then(|s| Some((s.address(), s.uncompressed_data().ok()?)))
            .filter(|(_, d)| !d.is_empty())
    };
    let text = elf.section_by_name(".text").map_or(0, |s| s.address());
    let (rows, source) = if let Some((address, data)) = section(".eh_frame") {
        let mut eh = EhFrame::new(&data, LittleEndian);
        eh.set_address_size(8);
        let mut bases = BaseAddresses::default()
            .set_eh_frame(address)
            .set_text(text);
        if let Some((hdr, _)) = section(".eh_frame_hdr") {
            bases = bases.set_eh_frame_hdr(hdr);
        }
        if let Some(got) = elf.section_by_name(".got") {
            bases = bases.set_got(got.address());
        }
        (rows_of(&eh, &bases, &to_offset)?, ".eh_frame")
    } else if let Some((_, data)) = section(".debug_frame") {
        let mut df = gimli::DebugFrame::new(&data, LittleEndian);
        df.set_address_size(8);
        let bases = BaseAddresses::default();
        (rows_of(&df, &bases, &to_offset)?, ".debug_frame")
    } else {
        bail!("{}: no .eh_frame or .debug_frame", path.display());
    };
    let mut rows = rows;
    for (start, end, kind) in go_special_frames(&elf, &to_offset) {
        override_range(&mut rows, start, end, kind);
    }
    Ok(UnwindTable { rows, source })
}

/// Go's functions that call on the g0 stack (see [`Kind::StackSwitch`]):
/// the runtime's switches, stack growth, and the vDSO clock calls.
const STACK_SWITCHES: &[&str] = &[
    "runtime.systemstack",
    "runtime.systemstack.abi0",
    "runtime.mcall",
    "runtime.mcall.abi0",
    "runtime.morestack",
    "runtime.morestack.abi0",
    "runtime.nanotime1",
    "runtime.nanotime1.abi0",
    "runtime.walltime",
    "runtime.walltime.abi0",
    "runtime.asmcgocall",
    "runtime.asmcgocall.abi0",
    "time.now",
    "time.now.abi0",
];

/// Go's signal return trampolines: the restorer its signal handlers return
/// to (a signal frame, which Go's CFI does not mark as one).
const SIGNAL_RETURNS: &[&str] = &[
    "runtime.sigreturn",
    "runtime.sigreturn.abi0",
    "runtime.sigreturn__sigaction",
    "runtime.sigreturn__sigaction.abi0",
];

/// File-offset ranges of the Go runtime's functions whose CFI misleads a
/// walk, with the rule to use instead.
fn go_special_frames<'d>(
    elf: &object::File<'d, &'d ReadCache<File>>,
    to_offset: &dyn Fn(u64) -> Option<u64>,
) -> Vec<(u32, u32, Kind)> {
    use object::ObjectSymbol;
    // Only Go binaries define these; the section is cheap to look for.
    if elf.section_by_name(".go.buildinfo").is_none() && elf.section_by_name(".gopclntab").is_none()
    {
        return Vec::new();
    }
    elf.symbols()
        .filter(|s| s.size() > 0)
        .filter_map(|s| {
            let name = s.name().ok()?;
            let (kind, before) = if STACK_SWITCHES.contains(&name) {
                (Kind::StackSwitch, 0)
            } else if SIGNAL_RETURNS.contains(&name) {
                // The handler returns to the restorer's first byte, and a
                // return address is looked up one byte before it.
                (Kind::Signal, 1)
            } else {
                return None;
            };
            let start = to_offset(s.address())? - before;
            let end = to_offset(s.address() + s.size() - 1)? + 1;
            Some((u32::try_from(start).ok()?, u32::try_from(end).ok()?, kind))
        })
        .collect()
}

/// Makes `[start, end)` one row of `kind`, keeping the rule that applied
/// from `end` on.
fn override_range(rows: &mut Vec<Row>, start: u32, end: u32, kind: Kind) {
    if start >= end {
        return;
    }
    let at_end = rows
        .iter()
        .take_while(|r| r.pc <= end)
        .last()
        .map(|r| Row { pc: end, ..*r });
    rows.retain(|r| r.pc < start || r.pc > end);
    let i = rows.partition_point(|r| r.pc < start);
    rows.insert(
        i,
        Row {
            pc: start,
            kind,
            cfa_offset: 0,
            rbp_offset8: 0,
        },
    );
    if let Some(r) = at_end {
        if rows.get(i + 1).is_none_or(|n| n.pc != end) {
            rows.insert(i + 1, r);
        }
    }
}

/// Row storage sized for x86-64: gimli's default keeps 192 register rules
/// per row, and copying such rows was most of the build time. x86-64 CFI
/// names at most the 17 general registers and the return address; an FDE
/// that needs more fails to evaluate and falls back like one without CFI.
struct X86Rows;

impl UnwindContextStorage<usize> for X86Rows {
    type Rules = [(Register, RegisterRule<usize>); 24];
    type Stack = Box<[UnwindTableRow<usize, Self>; 4]>;
}

/// Evaluates every FDE of a CFI section into rows, sorted and merged.
fn rows_of<'d, S>(
    section: &S,
    bases: &BaseAddresses,
    to_offset: &dyn Fn(u64) -> Option<u64>,
) -> Result<Vec<Row>>
where
    S: UnwindSection<EndianSlice<'d, LittleEndian>>,
{
    let mut ctx = Box::new(UnwindContext::<usize, X86Rows>::new_in());
    // (pc, is gap marker, row): a real row at the same pc as the end of the
    // previous function wins over the gap that end opens.
    let mut all: Vec<(u64, bool, Row)> = Vec::new();
    let mut entries = section.entries(bases);
    while let Some(entry) = entries.next().context("malformed CFI")? {
        let CieOrFde::Fde(partial) = entry else {
            continue;
        };
        // A bad FDE is skipped, not fatal: its addresses fall back.
        let Ok(fde) = partial.parse(S::cie_from_offset) else {
            continue;
        };
        let (Some(start), Some(end)) = (
            to_offset(fde.initial_address()),
            to_offset(fde.end_address().saturating_sub(1)).map(|e| e + 1),
        ) else {
            continue;
        };
        if end > u64::from(u32::MAX) || start >= end {
            continue;
        }
        let signal = fde.is_signal_trampoline();
        let Ok(mut table) = fde.rows(section, bases, &mut ctx) else {
            continue;
        };
        let first = all.len();
        loop {
            let row = match table.next_row() {
                Ok(Some(row)) => row,
                Ok(None) => break,
                Err(_) => {
                    // Keep what was evaluated; the rest of the FDE is a gap.
                    break;
                }
            };
            let Some(pc) = to_offset(row.start_address()) else {
                continue;
            };
            let compact = if signal {
                Row {
                    pc: pc as u32,
                    kind: Kind::Signal,
                    cfa_offset: 0,
                    rbp_offset8: 0,
                }
            } else {
                compact_row(pc as u32, row, section)
            };
            all.push((pc, false, compact));
        }
        if all.len() > first {
            all.push((
                end,
                true,
                Row {
                    pc: end as u32,
                    kind: Kind::None,
                    cfa_offset: 0,
                    rbp_offset8: 0,
                },
            ));
        }
    }
    all.sort_by_key(|(pc, gap, _)| (*pc, *gap));
    let mut rows: Vec<Row> = Vec::with_capacity(all.len());
    let mut last_pc = None;
    for (pc, _, row) in all {
        if last_pc == Some(pc) {
            // Same pc: the first (a real row, not a gap) wins.
            continue;
        }
        last_pc = Some(pc);
        if rows.last().is_some_and(|prev| prev.same_rule(&row)) {
            continue;
        }
        rows.push(row);
    }
    Ok(rows)
}

/// The part of a CFI row the BPF walker uses.
fn compact_row<'d, S>(pc: u32, row: &UnwindTableRow<usize, X86Rows>, section: &S) -> Row
where
    S: UnwindSection<EndianSlice<'d, LittleEndian>>,
{
    let unsupported = Row {
        pc,
        kind: Kind::Unsupported,
        cfa_offset: 0,
        rbp_offset8: 0,
    };
    match row.register(RA) {
        Some(RegisterRule::Undefined) => {
            return Row {
                kind: Kind::End,
                ..unsupported
            }
        }
        Some(RegisterRule::Offset(-8)) | None => {}
        Some(_) => return unsupported,
    }
    let rbp_offset8 = match row.register(RBP) {
        None | Some(RegisterRule::SameValue) | Some(RegisterRule::Undefined) => 0,
        Some(RegisterRule::Offset(off)) if off % 8 == 0 && (-1024..0).contains(&off) => {
            (off / 8) as i8
        }
        Some(_) => return unsupported,
    };
    let (kind, cfa_offset) = match row.cfa() {
        CfaRule::RegisterAndOffset { register, offset } => {
            let Ok(offset) = i16::try_from(*offset) else {
                return unsupported;
            };
            match *register {
                RSP => (Kind::CfaRsp, offset),
                RBP => (Kind::CfaRbp, offset),
                _ => return unsupported,
            }
        }
        CfaRule::Expression(expr) => {
            let Ok(expr) = expr.get(section) else {
                return unsupported;
            };
            match plt_threshold(expr.0.slice()) {
                Some(threshold) => (Kind::Plt, threshold),
                None => return unsupported,
            }
        }
    };
    Row {
        pc,
        kind,
        cfa_offset,
        rbp_offset8,
    }
}

/// The CFA expression linkers emit for PLT stubs:
/// `DW_OP_breg7 (rsp) 8; DW_OP_breg16 (rip) 0; DW_OP_lit15; DW_OP_and;
/// DW_OP_litN; DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus`, i.e.
/// CFA = rsp + 8 + ((rip & 15) >= N ? 8 : 0). Returns N.
fn plt_threshold(expr: &[u8]) -> Option<i16> {
    const LIT0: u8 = 0x30;
    match expr {
        [0x77, 8, 0x80, 0, 0x3f, 0x1a, lit, 0x2a, 0x33, 0x24, 0x22]
            if (LIT0..LIT0 + 32).contains(lit) =>
        {
            Some(i16::from(lit - LIT0))
        }
        _ => None,
    }
}

impl UnwindTable {
    /// The row that applies at file offset `pc`, as the BPF walker finds it.
    pub fn lookup(&self, pc: u32) -> Option<&Row> {
        let i = self.rows.partition_point(|r| r.pc <= pc);
        self.rows[..i].last()
    }
}

#[cfg(test)]
mod switch_tests {
    use super::*;

    fn row(pc: u32, kind: Kind, cfa_offset: i16) -> Row {
        Row {
            pc,
            kind,
            cfa_offset,
            rbp_offset8: 0,
        }
    }

    #[test]
    fn an_overridden_range_keeps_the_rule_after_it() {
        let mut rows = vec![
            row(0x10, Kind::CfaRsp, 8),
            row(0x18, Kind::CfaRsp, 16),
            row(0x30, Kind::CfaRsp, 24),
            row(0x50, Kind::None, 0),
        ];
        override_range(&mut rows, 0x14, 0x40, Kind::StackSwitch);
        assert_eq!(
            rows,
            vec![
                row(0x10, Kind::CfaRsp, 8),
                row(0x14, Kind::StackSwitch, 0),
                row(0x40, Kind::CfaRsp, 24),
                row(0x50, Kind::None, 0),
            ]
        );
        // A range that ends where a row starts keeps that row.
        let mut rows = vec![row(0x10, Kind::CfaRsp, 8), row(0x20, Kind::End, 0)];
        override_range(&mut rows, 0x10, 0x20, Kind::StackSwitch);
        assert_eq!(
            rows,
            vec![row(0x10, Kind::StackSwitch, 0), row(0x20, Kind::End, 0)]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libc() -> &'static Path {
        Path::new("/usr/lib/x86_64-linux-gnu/libc.so.6")
    }

    #[test]
    fn plt_expressions_are_recognised() {
        let e = [0x77, 8, 0x80, 0, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22];
        assert_eq!(plt_threshold(&e), Some(11));
        let mut other = e;
        other[1] = 16;
        assert_eq!(plt_threshold(&other), None);
    }

    #[test]
    fn libc_has_a_sorted_table_with_an_outermost_frame_and_a_signal_frame() {
        let t = build(libc()).unwrap();
        assert_eq!(t.source, ".eh_frame");
        assert!(t.rows.len() > 1000, "{} rows", t.rows.len());
        assert!(t.rows.windows(2).all(|w| w[0].pc < w[1].pc));
        assert!(t.rows.windows(2).all(|w| !w[0].same_rule(&w[1])));
        // clone3 / thread starts mark the end of the stack; __restore_rt
        // is a signal frame.
        assert!(t.rows.iter().any(|r| r.kind == Kind::End));
        assert!(t.rows.iter().any(|r| r.kind == Kind::Signal));
        // Most rows are plain %rsp-based rules.
        let rsp = t.rows.iter().filter(|r| r.kind == Kind::CfaRsp).count();
        assert!(rsp * 2 > t.rows.len());
        let unsupported = t
            .rows
            .iter()
            .filter(|r| r.kind == Kind::Unsupported)
            .count();
        assert!(
            unsupported * 100 < t.rows.len(),
            "{unsupported} unsupported"
        );
    }

    #[test]
    fn a_function_entry_has_the_cfa_at_rsp_plus_8() {
        // At the first instruction of any function the return address was
        // just pushed: CFA = %rsp + 8.
        let t = build(libc()).unwrap();
        let entries = t
            .rows
            .windows(2)
            .filter(|w| w[0].kind == Kind::None && w[1].kind == Kind::CfaRsp)
            .count();
        assert!(entries > 100);
        for w in t.rows.windows(2) {
            if w[0].kind == Kind::None && w[1].kind == Kind::CfaRsp {
                assert_eq!(w[1].cfa_offset, 8, "{:?}", w[1]);
            }
        }
    }

    #[test]
    fn not_elf_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x");
        std::fs::write(&p, b"not an elf file").unwrap();
        assert!(build(&p).is_err());
        assert!(build(&dir.path().join("missing")).is_err());
    }
}
