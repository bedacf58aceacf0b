//! Names a sampled Python frame: reads its code object from the process's
//! memory (`process_vm_readv`) once per process and address, and finds the
//! line of the instruction in its location table.

use super::Layout;

/// What a code object says about the function it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    /// `module.qualname`, e.g. `json.decoder.JSONDecoder.raw_decode`.
    pub name: String,
    /// `co_filename`.
    pub file: String,
    /// `co_firstlineno`.
    pub first_line: u32,
    /// `co_linetable` (3.11+ location table).
    pub linetable: Vec<u8>,
}

/// Longest string or table read from a process.
const MAX_READ: usize = 1 << 16;

/// Reads `len` bytes of process `pid` at `addr`.
pub fn read(pid: u32, addr: u64, len: usize) -> Option<Vec<u8>> {
    if len > MAX_READ || addr == 0 {
        return None;
    }
    let mut buf = vec![0u8; len];
    crate::process::read_memory(pid, addr, &mut buf).then_some(buf)
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// A `str` object: compact ASCII or compact UCS-1/2/4.
fn read_str(pid: u32, l: &Layout, addr: u64) -> Option<String> {
    let head = read(pid, addr, usize::from(l.compact_data))?;
    let length = usize::try_from(u64_at(&head, 16)?).ok()?;
    let state = u32::from_ne_bytes(head.get(32..36)?.try_into().ok()?);
    let (kind, compact, ascii) = ((state >> 2) & 7, (state >> 5) & 1, (state >> 6) & 1);
    if compact == 0 || length > MAX_READ / 4 {
        return None;
    }
    if ascii == 1 {
        let b = read(pid, addr + u64::from(l.ascii_data), length)?;
        return String::from_utf8(b).ok();
    }
    let width = match kind {
        1 | 2 | 4 => kind as usize,
        _ => return None,
    };
    let b = read(pid, addr + u64::from(l.compact_data), length * width)?;
    Some(
        b.chunks_exact(width)
            .map(|c| {
                let mut v = [0u8; 4];
                v[..width].copy_from_slice(c);
                char::from_u32(u32::from_le_bytes(v)).unwrap_or('\u{fffd}')
            })
            .collect(),
    )
}

/// A `bytes` object's contents.
fn read_bytes(pid: u32, addr: u64) -> Option<Vec<u8>> {
    let head = read(pid, addr, 32)?;
    let size = usize::try_from(u64_at(&head, 16)?).ok()?;
    read(pid, addr + 32, size)
}

/// Reads the code object at `code` in process `pid`.
pub fn read_code(pid: u32, l: &Layout, code: u64) -> Option<CodeInfo> {
    // Up to the last field read (3.11+: the bytecode starts after them).
    let len = [
        l.code_adaptive,
        l.code_qualname + 8,
        l.code_filename + 8,
        l.code_linetable + 8,
        l.code_firstlineno + 4,
    ]
    .into_iter()
    .max()
    .unwrap_or(0);
    let obj = read(pid, code, usize::from(len))?;
    let ptr = |off: u16| u64_at(&obj, usize::from(off));
    let qualname = read_str(pid, l, ptr(l.code_qualname)?)?;
    let file = read_str(pid, l, ptr(l.code_filename)?)?;
    let first_line = u32::from_ne_bytes(
        obj.get(usize::from(l.code_firstlineno)..usize::from(l.code_firstlineno) + 4)?
            .try_into()
            .ok()?,
    );
    let linetable = read_bytes(pid, ptr(l.code_linetable)?).unwrap_or_default();
    Some(CodeInfo {
        name: format!("{}.{qualname}", module_of(&file)),
        file,
        first_line,
        linetable,
    })
}

/// The module a file holds, as Python names it: the path under a
/// `pythonX.Y`, `site-packages` or `dist-packages` folder, dotted
/// (`json/decoder.py` -> `json.decoder`); else the file's stem (a script).
pub fn module_of(file: &str) -> String {
    if let Some(frozen) = file
        .strip_prefix("<frozen ")
        .and_then(|f| f.strip_suffix('>'))
    {
        return frozen.to_string();
    }
    let parts: Vec<&str> = file.split('/').collect();
    let root = parts.iter().rposition(|p| {
        *p == "site-packages"
            || *p == "dist-packages"
            || (p.starts_with("python3") && !p.ends_with(".py"))
    });
    let rel: Vec<&str> = match root {
        Some(i) if i + 1 < parts.len() => parts[i + 1..].to_vec(),
        _ => vec![parts.last().copied().unwrap_or(file)],
    };
    let mut dotted: Vec<String> = rel.iter().map(|s| s.to_string()).collect();
    if let Some(last) = dotted.last_mut() {
        if let Some(stem) = last.strip_suffix(".py") {
            *last = stem.to_string();
        }
    }
    if dotted.len() > 1 && dotted.last().is_some_and(|l| l == "__init__") {
        dotted.pop();
    }
    dotted.join(".")
}

/// The instruction index (in 2-byte code units) a frame's instruction
/// field stands for.
pub fn instruction_index(l: &Layout, code: u64, instr: u64) -> Option<u64> {
    use super::layout::Instr;
    // f_lasti is an int: the field read was 8 bytes.
    let lasti = || u64::try_from(instr as u32 as i32).ok();
    match l.instr {
        Instr::LastPointer => Some(instr.checked_sub(code + u64::from(l.code_adaptive))? / 2),
        Instr::NextPointer => {
            Some((instr.checked_sub(code + u64::from(l.code_adaptive))? / 2).saturating_sub(1))
        }
        Instr::LastiBytes => Some(lasti()? / 2),
        Instr::LastiUnits => lasti(),
    }
}

/// The line of instruction `index` (code units) in a code object's table,
/// in the version's format.
pub fn line(l: &Layout, table: &[u8], first_line: u32, index: u64) -> Option<u32> {
    use super::layout::Lines;
    match l.lines {
        Lines::Locations => line_of(table, first_line, index),
        Lines::Linetable310 => line_of_310(table, first_line, index * 2),
        Lines::Lnotab => line_of_lnotab(table, first_line, index * 2),
    }
}

/// 3.10's `co_linetable`: (bytecode bytes, line delta) pairs; a delta of
/// -128 means no line.
fn line_of_310(table: &[u8], first_line: u32, byte: u64) -> Option<u32> {
    let mut line = i64::from(first_line);
    let mut addr = 0u64;
    for pair in table.chunks_exact(2) {
        let end = addr + u64::from(pair[0]);
        let delta = pair[1] as i8;
        let here = if delta == -128 {
            None
        } else {
            line += i64::from(delta);
            Some(line)
        };
        if byte >= addr && byte < end {
            return here.and_then(|l| u32::try_from(l).ok());
        }
        addr = end;
    }
    None
}

/// `co_lnotab` (up to 3.9): (bytecode bytes, line delta) increments.
fn line_of_lnotab(table: &[u8], first_line: u32, byte: u64) -> Option<u32> {
    let mut line = i64::from(first_line);
    let mut addr = 0u64;
    for pair in table.chunks_exact(2) {
        addr += u64::from(pair[0]);
        if addr > byte {
            break;
        }
        line += i64::from(pair[1] as i8);
    }
    u32::try_from(line).ok()
}

/// The line of instruction `index` in a 3.11+ location table
/// (CPython's Objects/locations.md).
pub fn line_of(table: &[u8], first_line: u32, index: u64) -> Option<u32> {
    let mut i = 0;
    let mut line = i64::from(first_line);
    let mut at = 0u64;
    let varint = |i: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            let b = *table.get(*i)?;
            *i += 1;
            v |= u64::from(b & 63) << shift;
            if b & 64 == 0 {
                return Some(v);
            }
            shift += 6;
            if shift > 60 {
                return None;
            }
        }
    };
    let svarint = |i: &mut usize| -> Option<i64> {
        let v = varint(i)?;
        Some(if v & 1 == 1 {
            -((v >> 1) as i64)
        } else {
            (v >> 1) as i64
        })
    };
    while i < table.len() {
        let head = table[i];
        i += 1;
        if head & 128 == 0 {
            return None;
        }
        let code = (head >> 3) & 15;
        let length = u64::from(head & 7) + 1;
        let here = match code {
            15 => None,
            14 => {
                line += svarint(&mut i)?;
                varint(&mut i)?;
                varint(&mut i)?;
                varint(&mut i)?;
                Some(line)
            }
            13 => {
                line += svarint(&mut i)?;
                Some(line)
            }
            10..=12 => {
                line += i64::from(code) - 10;
                i += 2;
                Some(line)
            }
            _ => {
                i += 1;
                Some(line)
            }
        };
        if index < at + length {
            return here.and_then(|l| u32::try_from(l).ok());
        }
        at += length;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_are_named_as_python_names_them() {
        assert_eq!(
            module_of("/usr/lib/python3.11/json/decoder.py"),
            "json.decoder"
        );
        assert_eq!(module_of("/usr/lib/python3.11/json/__init__.py"), "json");
        assert_eq!(
            module_of("/home/u/.venv/lib/python3.12/site-packages/requests/api.py"),
            "requests.api"
        );
        assert_eq!(
            module_of("/usr/lib/python3/dist-packages/yaml/x.py"),
            "yaml.x"
        );
        assert_eq!(module_of("/tmp/nest.py"), "nest");
        assert_eq!(
            module_of("<frozen importlib._bootstrap>"),
            "importlib._bootstrap"
        );
        assert_eq!(module_of("<string>"), "<string>");
    }

    #[test]
    fn reads_older_line_tables() {
        // lnotab: line 10 from byte 0, +2 at byte 6, +1 at byte 10.
        let lnotab = [6, 2, 4, 1];
        assert_eq!(line_of_lnotab(&lnotab, 10, 0), Some(10));
        assert_eq!(line_of_lnotab(&lnotab, 10, 6), Some(12));
        assert_eq!(line_of_lnotab(&lnotab, 10, 12), Some(13));
        // 3.10: 4 bytes at line +0, 6 at +1, 2 with no line.
        let t = [4, 0, 6, 1, 2, 0x80];
        assert_eq!(line_of_310(&t, 20, 0), Some(20));
        assert_eq!(line_of_310(&t, 20, 5), Some(21));
        assert_eq!(line_of_310(&t, 20, 10), None);
        assert_eq!(line_of_310(&t, 20, 99), None);
    }

    #[test]
    fn reads_a_location_table() {
        // Built by CPython 3.12 for:
        //   def f(n):          (line 1)
        //       s = 0          (line 2)
        //       for i in ...   (line 3)
        // as: RESUME (line 1, short form), then line +1 (one-line form,
        // code 11) over 2 units, then line +1 (code 11) over 3 units.
        let table = [0x80, 0x00, 0xd9, 0x04, 0x05, 0xda, 0x04, 0x08];
        assert_eq!(line_of(&table, 1, 0), Some(1));
        assert_eq!(line_of(&table, 1, 1), Some(2));
        assert_eq!(line_of(&table, 1, 2), Some(2));
        assert_eq!(line_of(&table, 1, 3), Some(3));
        assert_eq!(line_of(&table, 1, 5), Some(3));
        assert_eq!(line_of(&table, 1, 6), None, "past the end");
        // Long form (code 14): line -1, then three varints.
        assert_eq!(line_of(&[0xf0, 0x03, 0, 0, 0], 10, 0), Some(9));
        // No location (code 15).
        assert_eq!(line_of(&[0xf8], 10, 0), None);
        // Garbage is refused, never a panic.
        assert_eq!(line_of(&[0x01, 0xff], 1, 0), None);
        assert_eq!(line_of(&[0xf0, 0x7f], 1, 0), None);
    }
}
