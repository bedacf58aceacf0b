/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The only definition of what the BPF sampler and user space share.
 * Rust sees these through the skeleton's generated `types::*`; it never
 * re-declares them. Constants live in enums because BTF keeps enums and
 * drops #defines.
 */
#ifndef __PROFILE_H
#define __PROFILE_H

enum profile_consts {
	/* bpf_get_current_comm() size (TASK_COMM_LEN). */
	COMM_LEN = 16,
	/* PERF_MAX_STACK_DEPTH: frames stored per stack id. */
	MAX_STACK_DEPTH = 127,
	/* Two map sets: the program fills one while user space drains the other. */
	GENERATIONS = 2,
};

/* One key of the counts hash: what profile.py's key_t holds, minus the
 * sampled-IP artifact (see shared/notes/profile-py-output/README.md). */
struct stack_key {
	__u32 tgid;
	/* Which address space of the process: 0 for one that ran before
	 * profiling started, else a number given at its exec or fork (see
	 * proc_gens), so that samples before and after an exec, or of a reused
	 * pid, are never symbolized with the wrong binary. */
	__u32 aspace;
	/* >= 0: id in this generation's stack map; < 0: -errno from
	 * bpf_get_stackid (-EFAULT: no such stack, -EEXIST: collision,
	 * -ENOMEM: stack map full), or -ENOENT when not collected (-U / -K). */
	__s32 user_stack_id;
	__s32 kernel_stack_id;
	char comm[COMM_LEN];
};

/* Per-CPU, per-generation accounting. Every sample that passes the filters
 * is `taken`; it is then either `counted` in the counts hash or `lost_hash_full`.
 * The stack error counters describe counted samples whose stack is missing. */
struct sample_stats {
	__u64 taken;
	__u64 counted;
	__u64 lost_hash_full;
	__u64 user_stack_collision;  /* -EEXIST */
	__u64 user_stack_nomem;      /* -ENOMEM and other errors but -EFAULT */
	__u64 kernel_stack_collision;
	__u64 kernel_stack_nomem;
};

/* What `new_tgids` announces: an address space seen for the first time. */
struct process_seen {
	__u32 tgid;
	__u32 aspace;
};

/* Filters, written into .rodata before load. */
struct sampler_config {
	__u8 filter_tgid;      /* only tgids present in map `tgids` */
	__u8 filter_tid;       /* only tids present in map `tids` */
	__u8 include_idle;     /* keep pid 0 samples */
	__u8 user_stacks;      /* collect user stacks */
	__u8 kernel_stacks;    /* collect kernel stacks */
	__u8 filter_cgroup;    /* only cgroup ids in map `cgroupset` */
	__u8 filter_mntns;     /* only mount namespaces in map `mount_ns_set` */
	__u8 exclude_self;     /* drop samples of the profiler's own tgid */
	__u8 use_pidns;        /* the profiler runs in a pid namespace: see pids as it does */
	__u32 self_tgid;
	__u64 pidns_dev;       /* that namespace: stat("/proc/self/ns/pid") */
	__u64 pidns_ino;
};

#endif /* __PROFILE_H */
