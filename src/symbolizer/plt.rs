//! PLT stub names (`strlen@plt`), synthesized as perf does.
//!
//! No ELF symbol table names the PLT's entries, so a sample in one was
//! named after the nearest symbol before it (`_init`), a function that never
//! ran. Each stub jumps through one GOT slot (`jmp *disp(%rip)`), and the
//! dynamic relocation of that slot names the function it reaches: the stub
//! is `name@plt`. Decoding the jump covers every layout the linkers emit
//! (`.plt`, `.plt.sec` with IBT, `.plt.got`) without knowing their order.

use std::path::Path;

use object::{Object, ObjectSection, ObjectSymbol, ObjectSymbolTable, SymbolIndex};
use rustc_hash::FxHashMap;

/// One file's PLT stubs: (first file offset, one past the last, name),
/// sorted.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PltStubs {
    stubs: Vec<(u64, u64, String)>,
}

/// x86-64 relocation types that fill a function's GOT slot.
const R_X86_64_GLOB_DAT: u32 = 6;
const R_X86_64_JUMP_SLOT: u32 = 7;

/// `endbr64`.
const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];

impl PltStubs {
    /// The stubs of the ELF file at `path` (none if it can't be read).
    pub fn read(path: &Path) -> PltStubs {
        let Ok(file) = std::fs::File::open(path) else {
            return PltStubs::default();
        };
        let cache = object::read::ReadCache::new(file);
        let Ok(elf) = object::File::parse(&cache) else {
            return PltStubs::default();
        };
        PltStubs::of(&elf)
    }

    /// The stubs of a parsed ELF file.
    pub fn of<'d, R: object::ReadRef<'d>>(elf: &object::File<'d, R>) -> PltStubs {
        if elf.architecture() != object::Architecture::X86_64 {
            return PltStubs::default();
        }
        let slots = got_slots(elf);
        if slots.is_empty() {
            return PltStubs::default();
        }
        let mut stubs = Vec::new();
        for (name, default_size) in [(".plt", 16), (".plt.sec", 16), (".plt.got", 8)] {
            let Some(section) = elf.section_by_name(name) else {
                continue;
            };
            let Ok(code) = section.data() else {
                continue;
            };
            let Some((file_offset, _)) = section.file_range() else {
                continue;
            };
            // With IBT every stub starts with endbr64 and takes 16 bytes.
            let size = if code.starts_with(&ENDBR64) {
                16
            } else {
                default_size
            };
            for (i, entry) in code.chunks(size as usize).enumerate() {
                let at = i as u64 * size;
                let Some(slot) = jump_slot(entry, section.address() + at) else {
                    continue;
                };
                if let Some(sym) = slots.get(&slot) {
                    stubs.push((
                        file_offset + at,
                        file_offset + at + size,
                        format!("{sym}@plt"),
                    ));
                }
            }
        }
        stubs.sort();
        PltStubs { stubs }
    }

    /// The stub holding `file_offset`: its name and the offset into it.
    pub fn lookup(&self, file_offset: u64) -> Option<(&str, u64)> {
        let i = self
            .stubs
            .partition_point(|(start, _, _)| *start <= file_offset);
        let (start, end, name) = self.stubs.get(i.checked_sub(1)?)?;
        (file_offset < *end).then(|| (name.as_str(), file_offset - start))
    }

    /// Whether the file has any.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.stubs.is_empty()
    }
}

/// The GOT slot a stub jumps through: the address its `jmp *disp32(%rip)`
/// (`ff 25`, possibly after `endbr64` and a `bnd` prefix) reads.
fn jump_slot(entry: &[u8], address: u64) -> Option<u64> {
    let at = entry.windows(2).take(8).position(|w| w == [0xff, 0x25])?;
    let disp = i32::from_le_bytes(entry.get(at + 2..at + 6)?.try_into().ok()?);
    // %rip is the address after the 6-byte instruction.
    Some((address + at as u64 + 6).wrapping_add_signed(i64::from(disp)))
}

/// GOT slot address -> the dynamic symbol its relocation fills it with.
fn got_slots<'d, R: object::ReadRef<'d>>(elf: &object::File<'d, R>) -> FxHashMap<u64, String> {
    let mut out = FxHashMap::default();
    let Some(dynsym) = elf.dynamic_symbol_table() else {
        return out;
    };
    for name in [".rela.plt", ".rela.dyn"] {
        let Some(data) = elf.section_by_name(name).and_then(|s| s.data().ok()) else {
            continue;
        };
        // Elf64_Rela: r_offset, r_info (symbol << 32 | type), r_addend.
        for rela in data.chunks_exact(24) {
            let offset = u64::from_le_bytes(rela[0..8].try_into().expect("8 bytes"));
            let info = u64::from_le_bytes(rela[8..16].try_into().expect("8 bytes"));
            let kind = info as u32;
            if kind != R_X86_64_JUMP_SLOT && kind != R_X86_64_GLOB_DAT {
                continue;
            }
            let index = (info >> 32) as usize;
            let Ok(sym) = dynsym.symbol_by_index(SymbolIndex(index)) else {
                continue;
            };
            match sym.name() {
                Ok(n) if !n.is_empty() => {
                    out.insert(offset, n.to_string());
                }
                _ => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_jump_of_each_stub_layout() {
        // .plt: jmp *0x2fba(%rip) at 0x1050 -> 0x4010.
        let plt = [
            0xff, 0x25, 0xba, 0x2f, 0, 0, 0x68, 2, 0, 0, 0, 0xe9, 0xc0, 0xff, 0xff, 0xff,
        ];
        assert_eq!(jump_slot(&plt, 0x1050), Some(0x4010));
        // .plt.sec: endbr64; bnd jmp *0x2f75(%rip).
        let sec = [
            0xf3, 0x0f, 0x1e, 0xfa, 0xf2, 0xff, 0x25, 0x75, 0x2f, 0, 0, 0x0f, 0x1f, 0x44, 0, 0,
        ];
        assert_eq!(jump_slot(&sec, 0x1070), Some(0x1070 + 5 + 6 + 0x2f75));
        // PLT0 (push; jmp *...) decodes too, but its slot has no relocation.
        assert_eq!(jump_slot(&[0x0f, 0x1f, 0x40, 0], 0), None);
    }

    #[test]
    fn names_the_stubs_of_a_real_binary() {
        // This test binary calls libc through its PLT (or .plt.got).
        let me = std::env::current_exe().unwrap();
        let stubs = PltStubs::read(&me);
        assert!(!stubs.is_empty());
        assert!(stubs
            .stubs
            .iter()
            .all(|(s, e, n)| s < e && n.ends_with("@plt")));
        let (start, _, name) = stubs.stubs[0].clone();
        assert_eq!(stubs.lookup(start + 3), Some((name.as_str(), 3)));
        assert_eq!(stubs.lookup(0), None);
    }
}
