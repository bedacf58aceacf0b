//! The core kernel's symbols, kept for the boot in the cache folder.
//!
//! Naming kernel addresses takes `/proc/kallsyms`, and reading it makes the
//! kernel format every symbol it has (120,000 lines, 5 MB here): ~55 ms of
//! system time and ~20 ms of parsing at every start, a third of what a
//! 20 s run on an idle machine costs. The core kernel's text (`_stext` to
//! `_etext`) and its symbols do not change while the machine is up, so the
//! first run of a boot writes them to the cache folder
//! (`kallsyms-BOOT_ID`, readable by root only: they are kernel addresses)
//! and later runs of the same boot hand that file to blazesym instead.
//!
//! Only addresses inside that text are named from it. Modules, BPF
//! programs and trampolines come and go, so the first address outside it
//! switches the run to the real `/proc/kallsyms` for good: a name is never
//! taken from a copy that could be stale.
//!
//! The copy is indexed by address ([`KernelIndex`]), its names read back
//! when needed; the real list is blazesym's.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use super::kernel_index::KernelIndex;
use crate::safe_file::{SafeDir, TempFile};
use crate::sampler::own_symbols::KernelSymbol;

/// The header line's first words (blazesym skips the line: no address).
const HEADER: &str = "# rs-profile core kernel text";

/// Which symbols kernel addresses are named from (see the module's doc).
pub struct KernelText {
    dir: Option<Arc<SafeDir>>,
    state: State,
    /// This profiler's own BPF programs, sorted: named here, whichever
    /// list names the rest.
    own: Vec<KernelSymbol>,
}

enum State {
    /// Not looked for yet (only a run that meets a kernel address does).
    Untried,
    /// The boot's copy, indexed, and the text it covers (`_stext..=_etext`).
    Cached(KernelIndex, u64, u64),
    /// `/proc/kallsyms` itself.
    Full,
}

impl KernelText {
    /// Kernel symbols cached in `dir` (None: always `/proc/kallsyms`).
    pub fn new(dir: Option<Arc<SafeDir>>) -> KernelText {
        let state = if dir.is_some() {
            State::Untried
        } else {
            State::Full
        };
        KernelText {
            dir,
            state,
            own: Vec::new(),
        }
    }

    /// Names `own` (this profiler's BPF programs, as the kernel names
    /// them) beside the boot's copy: a sample in one does not turn the run
    /// to `/proc/kallsyms`.
    pub fn with_own(mut self, mut own: Vec<KernelSymbol>) -> KernelText {
        own.sort_by_key(|s| s.start);
        self.own = own;
        self
    }

    /// The own program holding `addr`, and `addr`'s offset in it.
    fn own(&self, addr: u64) -> Option<(&str, u64)> {
        let i = self.own.partition_point(|s| s.start <= addr);
        let s = self.own[..i].last()?;
        (addr - s.start < s.len).then(|| (s.name.as_str(), addr - s.start))
    }

    /// The names of `addrs` (symbol and offset) from the boot's copy and
    /// this profiler's own programs when they cover them all; None when
    /// they are to be named from `/proc/kallsyms` (blazesym's
    /// `Kernel::default()` source, which names the own programs alike).
    pub fn names(&mut self, addrs: &[u64]) -> Option<Vec<Option<(String, u64)>>> {
        if matches!(self.state, State::Untried) {
            self.state = self
                .dir
                .as_ref()
                .and_then(|d| cached_or_made(d).ok())
                .unwrap_or(State::Full);
        }
        if let State::Cached(index, start, end) = &self.state {
            let in_copy = |a: &u64| (*start..=*end).contains(a);
            if addrs.iter().all(|a| in_copy(a) || self.own(*a).is_some()) {
                let name = |a: &u64| match self.own(*a) {
                    Some((own, offset)) => Some((own.to_string(), offset)),
                    None => index.name(*a),
                };
                return Some(addrs.iter().map(name).collect());
            }
            // Code outside the core text (a module, another BPF program, a
            // trampoline): the real list from now on.
            self.state = State::Full;
        }
        None
    }

    /// Whether the boot's copy names what this run met so far.
    #[cfg(test)]
    fn cached(&self) -> bool {
        matches!(self.state, State::Cached(..))
    }

    /// Which list names the run's kernel addresses, for `--stats`.
    pub fn list(&self) -> &'static str {
        match self.state {
            State::Untried => "none needed",
            State::Cached(..) => "the boot's copy",
            State::Full => "/proc/kallsyms",
        }
    }
}

/// This boot's copy, read, or made from `/proc/kallsyms` if there is none.
fn cached_or_made(dir: &Arc<SafeDir>) -> Result<State> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    let name = format!("kallsyms-{}", boot.trim());
    if let Ok(state) = open(dir, &name) {
        return Ok(state);
    }
    let all = std::fs::read_to_string("/proc/kallsyms").context("/proc/kallsyms")?;
    let (text, start, end) = core_text(&all)?;
    let tmp = TempFile::new(dir, &name)?;
    tmp.file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let mut w = std::io::BufWriter::new(tmp.file());
    writeln!(w, "{HEADER} {start:x} {end:x}")?;
    w.write_all(text.as_bytes())?;
    w.flush()?;
    drop(w);
    match tmp.persist(false, false) {
        Err(e) if !format!("{e:#}").contains("appeared") => return Err(e),
        _ => {}
    }
    // Copies of earlier boots are of no use any more.
    if let Ok(names) = dir.names() {
        for old in names
            .iter()
            .filter(|n| n.starts_with("kallsyms-") && **n != name)
        {
            let _ = dir.remove(old);
        }
    }
    open(dir, &name)
}

/// Opens the copy `name`, reads the range its header gives and indexes it.
fn open(dir: &Arc<SafeDir>, name: &str) -> Result<State> {
    let file = dir.open_regular(name)?;
    let mut header = String::new();
    BufReader::new(&file)
        .read_line(&mut header)
        .context("reading the header")?;
    let (start, end) = parse_header(&header)?;
    Ok(State::Cached(KernelIndex::read(file)?, start, end))
}

fn parse_header(line: &str) -> Result<(u64, u64)> {
    let Some(rest) = line.strip_prefix(HEADER) else {
        bail!("not a kernel text copy");
    };
    let mut words = rest.split_whitespace();
    let mut hex = || -> Result<u64> {
        Ok(u64::from_str_radix(
            words.next().context("short header")?,
            16,
        )?)
    };
    let (start, end) = (hex()?, hex()?);
    if start == 0 || start >= end {
        bail!("bad range in header");
    }
    Ok((start, end))
}

/// A line's address and name, if it is the core kernel's (a fourth word is
/// the module: `[ext4]`, `[bpf]`).
fn core(line: &str) -> Option<(u64, &str)> {
    let mut words = line.split_ascii_whitespace();
    let addr = u64::from_str_radix(words.next()?, 16).ok()?;
    let _kind = words.next()?;
    let name = words.next()?;
    words.next().is_none().then_some((addr, name))
}

/// The lines of `/proc/kallsyms` text `all` that lie in the core kernel's
/// text (`_stext..=_etext`, no module's), and that range.
fn core_text(all: &str) -> Result<(String, u64, u64)> {
    let find = |want: &str| {
        all.lines()
            .filter_map(core)
            .find(|(_, name)| *name == want)
            .map(|(a, _)| a)
            .with_context(|| format!("no {want} in /proc/kallsyms (addresses hidden?)"))
    };
    let (start, end) = (find("_stext")?, find("_etext")?);
    if start == 0 || start >= end {
        bail!("/proc/kallsyms: no kernel text range (addresses hidden?)");
    }
    let mut text = String::new();
    for line in all.lines() {
        if core(line).is_some_and(|(a, _)| (start..=end).contains(&a)) {
            text.push_str(line);
            text.push('\n');
        }
    }
    Ok((text, start, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use blazesym::symbolize::source::Kernel;
    use blazesym::MaybeDefault;
    use std::fs::File;

    const KALLSYMS: &str = "\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81000000 T _text
ffffffff81000100 t do_one_initcall
ffffffff81200000 T _etext
ffffffff82000000 D some_data
ffffffffc0000000 t ext4_fill_super\t[ext4]
ffffffffc0100000 t bpf_prog_1234_run\t[bpf]
";

    #[test]
    fn the_core_text_is_kept_and_the_rest_left_out() {
        let (text, start, end) = core_text(KALLSYMS).unwrap();
        assert_eq!((start, end), (0xffffffff81000000, 0xffffffff81200000));
        assert_eq!(
            text.lines()
                .map(|l| l.rsplit(' ').next().unwrap())
                .collect::<Vec<_>>(),
            ["_stext", "_text", "do_one_initcall", "_etext"]
        );
        // Zeroed addresses (no root, kptr_restrict): no range, no copy.
        let hidden = KALLSYMS.replace("ffffffff81", "0000000000");
        assert!(core_text(&hidden).is_err());
    }

    #[test]
    fn headers_parse_and_bad_ones_do_not() {
        assert_eq!(
            parse_header(&format!("{HEADER} ffffffff81000000 ffffffff81200000\n")).unwrap(),
            (0xffffffff81000000, 0xffffffff81200000)
        );
        for bad in [
            "ffffffff81000000 T _stext\n".to_string(),
            format!("{HEADER} ffffffff81000000\n"),
            format!("{HEADER} 2 1\n"),
            format!("{HEADER} 0 1\n"),
            format!("{HEADER} x y\n"),
        ] {
            assert!(parse_header(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_address_outside_the_core_text_turns_to_the_real_list_for_good() {
        let dir = tempfile::tempdir().unwrap();
        let safe = SafeDir::open(dir.path(), true).unwrap();
        let (text, start, end) = core_text(KALLSYMS).unwrap();
        std::fs::write(
            dir.path().join("copy"),
            format!("{HEADER} {start:x} {end:x}\n{text}"),
        )
        .unwrap();
        let mut k = KernelText {
            state: open(&safe, "copy").unwrap(),
            dir: Some(safe),
            own: Vec::new(),
        };
        let copy = k.names(&[0xffffffff81000100, 0xffffffff81000104, 0xffffffff81200000]);
        assert_eq!(
            copy,
            Some(vec![
                Some(("do_one_initcall".into(), 0)),
                Some(("do_one_initcall".into(), 4)),
                Some(("_etext".into(), 0)),
            ])
        );
        assert!(k.cached());
        // This profiler's own program: named beside the copy, which stays.
        let mut k = k.with_own(vec![KernelSymbol {
            start: 0xffffffffc0100000,
            len: 0x100,
            name: "bpf_prog_1234_on_exec".into(),
        }]);
        assert_eq!(
            k.names(&[0xffffffff81000100, 0xffffffffc0100010]),
            Some(vec![
                Some(("do_one_initcall".into(), 0)),
                Some(("bpf_prog_1234_on_exec".into(), 0x10)),
            ])
        );
        assert!(k.cached());
        // A module's address: /proc/kallsyms, now and later.
        assert_eq!(k.names(&[0xffffffff81000100, 0xffffffffc0000000]), None);
        assert!(!k.cached());
        assert_eq!(k.names(&[0xffffffff81000100]), None);
    }

    /// The copy, indexed, names core addresses as blazesym names them from
    /// `/proc/kallsyms` (run as root: others see zeroed addresses).
    #[test]
    fn the_copy_names_core_addresses_as_the_real_list_does() {
        use blazesym::symbolize::{source::Source, Input, Symbolizer};
        let all = std::fs::read_to_string("/proc/kallsyms").unwrap();
        let (text, start, end) = core_text(&all).expect("run the tests as root");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copy");
        std::fs::write(&path, format!("{HEADER} {start:x} {end:x}\n{text}")).unwrap();
        // Symbols' own addresses, a few bytes in, and the range's ends.
        let mut addrs: Vec<u64> = text
            .lines()
            .filter_map(core)
            .step_by(53)
            .flat_map(|(a, _)| [a, a + 1, a + 13])
            .filter(|a| (start..=end).contains(a))
            .chain([start, end, end - 1])
            .collect();
        addrs.sort_unstable();
        let real: Vec<Option<(String, u64)>> = Symbolizer::new()
            .symbolize(
                &Source::Kernel(Kernel {
                    vmlinux: MaybeDefault::None,
                    ..Kernel::default()
                }),
                Input::AbsAddr(&addrs),
            )
            .unwrap()
            .iter()
            .map(|s| s.as_sym().map(|s| (s.name.to_string(), s.offset as u64)))
            .collect();
        let copy: Vec<Option<(String, u64)>> = {
            let index = KernelIndex::read(File::open(&path).unwrap()).unwrap();
            addrs.iter().map(|a| index.name(*a)).collect()
        };
        assert!(addrs.len() > 1000, "{} addresses", addrs.len());
        assert!(copy.iter().all(Option::is_some));
        for ((a, c), r) in addrs.iter().zip(&copy).zip(&real) {
            assert_eq!(c, r, "{a:#x}");
        }
    }

    #[test]
    fn without_a_folder_the_real_list_is_used() {
        let mut k = KernelText::new(None);
        assert_eq!(k.names(&[0xffffffff81000100]), None);
    }

    #[test]
    fn own_programs_are_named_within_their_code_only() {
        let sym = |start, len, name: &str| KernelSymbol {
            start,
            len,
            name: name.into(),
        };
        let k = KernelText::new(None).with_own(vec![
            sym(
                0xffffffffc0000838,
                0xd4,
                "bpf_prog_b7af607103b2e42f_on_fork",
            ),
            sym(
                0xffffffffc000071c,
                0x11c,
                "bpf_prog_39475426a45e4ca2_on_exec",
            ),
        ]);
        assert_eq!(
            k.own(0xffffffffc000071c),
            Some(("bpf_prog_39475426a45e4ca2_on_exec", 0))
        );
        assert_eq!(
            k.own(0xffffffffc0000837),
            Some(("bpf_prog_39475426a45e4ca2_on_exec", 0x11b))
        );
        assert_eq!(
            k.own(0xffffffffc0000900),
            Some(("bpf_prog_b7af607103b2e42f_on_fork", 0xc8))
        );
        assert_eq!(k.own(0xffffffffc000090c), None, "past the last");
        assert_eq!(k.own(0xffffffffc000071b), None, "before the first");
        assert_eq!(k.own(0xffffffff81000000), None);
    }
}
