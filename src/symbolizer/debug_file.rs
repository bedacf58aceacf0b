//! Names of stripped binaries from their separate debug files (a
//! distribution's -dbgsym or -dbg package), read from the debug file's ELF
//! symbol table rather than its DWARF.
//!
//! Debian's libc, coreutils, xz and most of /usr/bin have no `.symtab`: their
//! names are in `/usr/lib/debug`. blazesym finds that file when asked for
//! debug symbols, but then parses its DWARF (decompressed, every unit's
//! abbreviations: ~28 MB of peak memory and half the p95 symbolizing time on
//! a busy machine, measured). The debug file's `.symtab` holds the very names
//! perf shows, so we find the file ourselves (by build id, else by debug
//! link, where gdb and perf look) and look names up in its symbol table by
//! virtual address, which the stripped binary's load segments give.

use std::path::{Path, PathBuf};

use object::{Object, ObjectSegment};

/// Where debug files are installed.
const DEBUG_ROOT: &str = "/usr/lib/debug";

/// A stripped binary's debug file, and how to turn the binary's file
/// offsets into the addresses its symbols use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebugFile {
    /// The debug file.
    pub path: PathBuf,
    /// The binary's load segments: (file offset, virtual address, size in
    /// the file).
    segments: Vec<(u64, u64, u64)>,
}

impl DebugFile {
    /// The debug file of `binary` if its names are only there (no
    /// `.symtab` of its own) and the file is installed; None otherwise.
    pub fn find(binary: &Path) -> Option<DebugFile> {
        let file = std::fs::File::open(binary).ok()?;
        let cache = object::read::ReadCache::new(file);
        let elf = object::File::parse(&cache).ok()?;
        if elf.section_by_name(".symtab").is_some() {
            return None;
        }
        let segments: Vec<(u64, u64, u64)> = elf
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                (offset, s.address(), size)
            })
            .collect();
        let by_build_id = elf.build_id().ok().flatten().and_then(|id| {
            let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
            (hex.len() > 2).then(|| {
                PathBuf::from(format!(
                    "{DEBUG_ROOT}/.build-id/{}/{}.debug",
                    &hex[..2],
                    &hex[2..]
                ))
            })
        });
        let by_link = elf.gnu_debuglink().ok().flatten().and_then(|(name, _crc)| {
            let name = std::str::from_utf8(name).ok()?;
            let dir = binary.parent()?;
            // gdb's order: beside the binary, in its .debug, then
            // under the global debug directory.
            let rel = dir.strip_prefix("/").unwrap_or(dir);
            [
                dir.join(name),
                dir.join(".debug").join(name),
                Path::new(DEBUG_ROOT).join(rel).join(name),
            ]
            .into_iter()
            .find(|p| p.as_path() != binary && has_symtab(p))
        });
        let path = by_build_id.filter(|p| has_symtab(p)).or(by_link)?;
        Some(DebugFile { path, segments })
    }

    /// The virtual address of the binary's file offset `offset`, if a load
    /// segment holds it.
    pub fn address(&self, offset: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|(start, _, size)| offset >= *start && offset - start < *size)
            .map(|(start, vaddr, _)| offset - start + vaddr)
    }
}

/// Whether `path` is an ELF file with a symbol table.
fn has_symtab(path: &Path) -> bool {
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    let cache = object::read::ReadCache::new(file);
    object::File::parse(&cache).is_ok_and(|elf| elf.section_by_name(".symtab").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stripped_distribution_binary_has_its_names_in_a_debug_file() {
        // Debian's libc: no .symtab; libc6-dbg (scripts/install-deps.sh)
        // installs its debug file by build id.
        let libc = Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        let d = DebugFile::find(libc).expect("the debug file of libc (libc6-dbg)");
        assert!(d.path.starts_with(DEBUG_ROOT), "{}", d.path.display());
        assert!(has_symtab(&d.path));
        // A binary with its own symbol table needs no debug file for names.
        assert_eq!(DebugFile::find(&std::env::current_exe().unwrap()), None);
        assert_eq!(DebugFile::find(Path::new("/proc/self/status")), None);
    }

    #[test]
    fn a_debug_link_beside_the_binary_is_followed() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("m.c");
        std::fs::write(&src, "int main(void){return 0;}\n").unwrap();
        let bin = dir.path().join("m");
        let run = |cmd: &mut std::process::Command| assert!(cmd.status().unwrap().success());
        run(std::process::Command::new("gcc")
            .arg("-Wl,--build-id=none")
            .arg("-o")
            .arg(&bin)
            .arg(&src));
        let dbg = dir.path().join(".debug");
        std::fs::create_dir(&dbg).unwrap();
        run(std::process::Command::new("objcopy")
            .arg("--only-keep-debug")
            .arg(&bin)
            .arg(dbg.join("m.debug")));
        run(std::process::Command::new("strip").arg("-s").arg(&bin));
        run(std::process::Command::new("objcopy")
            .current_dir(&dbg)
            .arg("--add-gnu-debuglink=m.debug")
            .arg(&bin));
        let d = DebugFile::find(&bin).expect("found through the debug link");
        assert_eq!(d.path, dbg.join("m.debug"));
        // Without the debug file, no names from it.
        std::fs::remove_file(dbg.join("m.debug")).unwrap();
        assert_eq!(DebugFile::find(&bin), None);
    }

    #[test]
    fn file_offsets_map_through_the_load_segments() {
        let d = DebugFile {
            path: PathBuf::new(),
            segments: vec![(0, 0, 0x1000), (0x1000, 0x401000, 0x2000)],
        };
        assert_eq!(d.address(0x10), Some(0x10));
        assert_eq!(d.address(0x1234), Some(0x401234));
        assert_eq!(d.address(0x3000), None);
    }
}
