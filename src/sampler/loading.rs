//! What loading the BPF object cost (`--stats`), and why it failed when it
//! did, in one line: the cause when it is known, else the verifier's reason.

use std::time::Duration;

use anyhow::anyhow;

/// Why the BPF program could not be loaded; main prints these as one line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// No BTF for the running kernel: CO-RE can't relocate.
    #[error("this kernel has no BTF (/sys/kernel/btf/vmlinux is missing); rs-profile needs a kernel built with CONFIG_DEBUG_INFO_BTF=y")]
    NoBtf,
    /// Not root, or missing capabilities.
    #[error(
        "permission denied loading the BPF program; run as root or grant CAP_BPF and CAP_PERFMON"
    )]
    NoPermission,
}

/// What loading the sampler cost: start-up is most of what an idle run
/// costs, and the kernel's verifier was most of start-up.
#[derive(Debug, Clone, Default)]
pub struct StartCost {
    /// From opening the BPF object to the sampler ready to attach.
    pub wall: Duration,
    /// The verifier's own figures for the sampling program (with
    /// [`super::SamplerConfig::verifier_stats`]): its time and the instructions
    /// it went through.
    pub verifier: Option<(Duration, u64)>,
}

/// Reads `verification time N usec` and `processed N insns` from a
/// verifier log at level 4 (statistics only).
pub(super) fn verifier_figures(log: &str) -> Option<(Duration, u64)> {
    let after = |key: &str| -> Option<u64> {
        let rest = &log[log.find(key)? + key.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((
        Duration::from_micros(after("verification time ")?),
        after("processed ")?,
    ))
}

/// What libbpf said while loading: the verifier's log on a rejection.
static LIBBPF_LOG: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

pub(super) fn keep_libbpf_message(_level: libbpf_rs::PrintLevel, msg: String) {
    if let Ok(mut log) = LIBBPF_LOG.lock() {
        // Bounded: only the end of a long verifier log matters.
        if log.len() > 1 << 20 {
            log.clear();
        }
        log.push_str(&msg);
    }
}

/// Turns a libbpf error into a [`LoadError`] when the cause is known. As
/// root, EACCES is the verifier rejecting the program: say so, with the
/// log's last lines (the whole log with RS_PROFILE_BPF_LOG=1).
pub(super) fn load_error(err: libbpf_rs::Error, what: &str) -> anyhow::Error {
    let root = unsafe { libc::geteuid() } == 0;
    match err.kind() {
        libbpf_rs::ErrorKind::PermissionDenied if !root => LoadError::NoPermission.into(),
        _ => {
            let log = LIBBPF_LOG.lock().map(|l| l.clone()).unwrap_or_default();
            if std::env::var_os("RS_PROFILE_BPF_LOG").is_some() {
                eprintln!("{log}");
            }
            // The verifier's reason is the line before its "processed N
            // insns" summary.
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines
                .iter()
                .position(|l| l.starts_with("processed "))
                .and_then(|i| i.checked_sub(1))
                .map(|i| format!("the verifier said: {}", lines[i]))
                .unwrap_or_default();
            if tail.is_empty() {
                anyhow!("{what}: {err}")
            } else {
                anyhow!("{what}: {err}: {tail}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_figures_are_read_from_a_statistics_log() {
        let log = "verification time 35769 usec\nstack depth 184+8+16+32+88\n\
processed 19514 insns (limit 1000000) max_states_per_insn 13 total_states 1010 peak_states 1597 mark_read 0\n";
        assert_eq!(
            verifier_figures(log),
            Some((Duration::from_micros(35769), 19514))
        );
        assert_eq!(verifier_figures(""), None);
        assert_eq!(verifier_figures("verification time x usec"), None);
    }
}
