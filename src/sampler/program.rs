//! `--ebpf`: the BPF program as it will run, with the options filled in, as
//! profile.py prints its program after substituting its placeholders.
//!
//! Our program is compiled once (CO-RE); the options reach it as `.rodata`
//! constants, map sizes and filter-map contents set before it is attached.
//! This writes those values into the printed source, where they take effect.

use super::SamplerConfig;

/// The program's source, as compiled into the binary.
pub const SOURCE: &str = include_str!("../../bpf/profile.bpf.c");
/// The unwinder it includes.
pub const UNWINDER_SOURCE: &str = include_str!("../../bpf/unwinder.bpf.h");

/// The source with `cfg`'s values in place of the defaults.
pub fn source_with_options(cfg: &SamplerConfig) -> String {
    let b = u8::from;
    let config = format!(
        "const volatile struct sampler_config cfg = {{\n\
         \t.filter_tgid = {},\n\
         \t.filter_tid = {},\n\
         \t.include_idle = {},\n\
         \t.user_stacks = {},\n\
         \t.kernel_stacks = {},\n\
         \t.filter_cgroup = {},\n\
         \t.filter_mntns = {},\n\
         \t.exclude_self = {},\n\
         \t.use_pidns = {},\n\
         \t.unwind_mode = {}, /* --unwind {} */\n\
         \t.self_tgid = {}, /* this process */\n\
         \t.pidns_dev = {},\n\
         \t.pidns_ino = {}, /* /proc/self/ns/pid */\n\
         }};",
        b(!cfg.pids.is_empty()),
        b(!cfg.tids.is_empty()),
        b(cfg.include_idle),
        b(cfg.user_stacks),
        b(cfg.kernel_stacks),
        b(cfg.cgroup_map.is_some()),
        b(cfg.mntns_map.is_some()),
        b(!cfg.include_self),
        b(cfg.pid_namespace.is_some()),
        match cfg.unwind {
            crate::unwind::UnwindMode::Fp => 0,
            crate::unwind::UnwindMode::Auto => 1,
            crate::unwind::UnwindMode::Dwarf => 2,
        },
        format!("{:?}", cfg.unwind).to_lowercase(),
        std::process::id(),
        cfg.pid_namespace.map_or(0, |n| n.0),
        cfg.pid_namespace.map_or(0, |n| n.1),
    );
    let list = |ids: &[u32]| {
        ids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut filled = Vec::new();
    if !cfg.pids.is_empty() {
        filled.push(format!("tgids: {}", list(&cfg.pids)));
    }
    if !cfg.tids.is_empty() {
        filled.push(format!("tids: {}", list(&cfg.tids)));
    }
    if let Some(p) = &cfg.cgroup_map {
        filled.push(format!("cgroup_sets[0]: {}", p.display()));
    }
    if let Some(p) = &cfg.mntns_map {
        filled.push(format!("mount_ns_sets[0]: {}", p.display()));
    }
    let mut out = String::with_capacity(SOURCE.len() + UNWINDER_SOURCE.len() + 512);
    // Which map a max_entries line belongs to: the struct being declared.
    let mut in_struct = "";
    // One program: the unwinder's header in place of its #include.
    let whole = SOURCE.replace("#include \"unwinder.bpf.h\"\n", UNWINDER_SOURCE);
    for line in whole.lines() {
        if let Some(name) = line
            .strip_prefix("struct ")
            .and_then(|r| r.strip_suffix(" {"))
        {
            in_struct = name;
        }
        if line.starts_with("const volatile struct sampler_config cfg") {
            out.push_str(&config);
        } else if line.trim() == "__uint(max_entries, 40960);" && in_struct == "counts_map" {
            out.push_str(&format!(
                "\t__uint(max_entries, {});",
                cfg.hash_storage_size
            ));
        } else if line.trim() == "__uint(max_entries, 16384);"
            && (in_struct == "stacks_map" || in_struct == "user_stacks_map")
        {
            let n = if in_struct == "user_stacks_map" && cfg.unwind == crate::unwind::UnwindMode::Fp
            {
                1
            } else {
                cfg.stack_storage_size
            };
            out.push_str(&format!("\t__uint(max_entries, {n});"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !filled.is_empty() {
        out.push_str(&format!(
            "\n/* Filled by user space before attach: {} */\n",
            filled.join("; ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sampler::{SampleRate, SamplerConfig};

    #[test]
    fn options_are_filled_in() {
        let cfg = SamplerConfig {
            rate: SampleRate::Frequency(49),
            pids: vec![42, 43],
            tids: vec![],
            include_idle: false,
            user_stacks: true,
            kernel_stacks: false,
            cpu: None,
            hash_storage_size: 123,
            stack_storage_size: 7,
            cgroup_map: None,
            mntns_map: None,
            include_self: false,
            pid_namespace: Some((4, 4026532000)),
            ..Default::default()
        };
        let src = source_with_options(&cfg);
        assert!(src.contains("\t.filter_tgid = 1,"), "{src}");
        assert!(src.contains("\t.kernel_stacks = 0,"));
        assert!(src.contains("\t.use_pidns = 1,"));
        assert!(src.contains("\t.unwind_mode = 1, /* --unwind auto */"));
        assert!(
            src.contains("static long walk_step("),
            "the unwinder is printed"
        );
        assert!(!src.contains("#include \"unwinder.bpf.h\""));
        assert!(src.contains("\t.pidns_ino = 4026532000,"));
        assert!(src.contains("__uint(max_entries, 123);"));
        assert!(src.contains("__uint(max_entries, 7);"));
        assert!(!src.contains("__uint(max_entries, 40960);"));
        assert!(src.contains("tgids: 42, 43"));
        // Everything else is the program as compiled.
        assert_eq!(src.matches("SEC(\"perf_event\")").count(), 1);
    }
}
