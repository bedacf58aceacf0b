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
	/* Non-zero: the user stack was walked with unwind tables and is in this
	 * generation's `user_stacks` under this hash (user_stack_id is then
	 * -ENOENT). */
	__u64 user_stack_hash;
	/* Non-zero: the kernel stack is in this generation's `kernel_stacks`
	 * under this hash (kernel_stack_id is then -ENOENT). */
	__u64 kernel_stack_hash;
	/* Non-zero: the Python frames the thread was running are in this
	 * generation's `python_stacks` under this hash. */
	__u64 python_stack_hash;
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
	/* --unwind auto|dwarf: counted samples whose user stack was walked
	 * with unwind tables ... */
	__u64 unwound;
	/* ... and of those, the walks that stopped early (a bad read, no row,
	 * the depth limit) rather than at the outermost frame. */
	__u64 unwind_truncated;
	/* Walks that crossed code in no mapping known to the unwinder (a
	 * library loaded since the process was read): user space is asked to
	 * read its maps again. */
	__u64 unwind_unknown_mapping;
	/* Counted samples of a process whose tables were not loaded yet: its
	 * user stack is a frame-pointer walk (bpf_get_stackid). */
	__u64 unwind_not_loaded;
	/* Counted samples whose unwound stack did not fit in `user_stacks`:
	 * their user stack is missing. */
	__u64 unwind_stacks_full;
	/* Samples of a process whose tables were not loaded yet, sent whole
	 * (registers and the top of the user stack) on `deferred_stacks` for
	 * user space to walk once the tables are built: not in the counts
	 * hash. taken == counted + lost_hash_full + deferred. */
	__u64 deferred;
	/* Of the samples that should have been deferred, those the ring buffer
	 * had no room for: walked with frame pointers (and `unwind_not_loaded`). */
	__u64 deferred_ring_full;
	/* Walks (within unwind_truncated) cut at MAX_STACK_DEPTH frames: the
	 * stack is deeper than a sample keeps, not stopped early. */
	__u64 unwind_cut;
	/* Why walks stopped early (within unwind_truncated, cut aside). */
	__u64 stop_bad_read;      /* the stack could not be read there */
	__u64 stop_fp_off_stack;  /* a frame pointer below the stack pointer */
	__u64 stop_no_rule;       /* code without a usable rule (--unwind dwarf) */
	__u64 stop_not_growing;   /* a caller's frame not above its callee's */
	/* Samples of a known Python process with Python frames, and those
	 * whose Python frames did not fit in `python_stacks`. */
	__u64 python_walked;
	__u64 python_stacks_full;
};

/* Why a walk stopped early (walk_state.stop_reason). */
enum stop_reason {
	STOP_BAD_READ = 1,
	STOP_FP_OFF_STACK = 2,
	STOP_NO_RULE = 3,
	STOP_NOT_GROWING = 4,
};

/* How user stacks are walked (--unwind). */
enum unwind_mode {
	UNWIND_MODE_FP = 0,    /* bpf_get_stackid: frame pointers, as bcc does */
	UNWIND_MODE_AUTO = 1,  /* unwind tables where a file has CFI, else frame pointers */
	UNWIND_MODE_DWARF = 2, /* unwind tables only */
};

enum unwind_consts {
	/* Rows of one table shard: 2^17 rows of 8 bytes, 1 MiB. */
	UNWIND_SHARD_SHIFT = 17,
	UNWIND_SHARD_ROWS = 1 << 17,
	/* Shards at most (the --unwind-memory budget is checked in user space). */
	UNWIND_MAX_SHARDS = 8192,
	/* Binary search steps: enough for 2^24 rows in one file. */
	UNWIND_SEARCH_STEPS = 25,
	/* Executable mappings kept per process (sorted; a power of two), and
	 * the binary search steps over them. */
	UNWIND_PROC_MAPPINGS = 256,
	UNWIND_PROC_STEPS = 9,
	/* Mapping slots shared by all loaded processes (2 MB of kernel
	 * memory): a busy machine's few hundred processes use a few
	 * thousand. */
	UNWIND_MAPPING_SLOTS = 65536,
	/* Bytes of user stack a deferred sample carries at most: what fits in
	 * a per-CPU array value (32 KB) with the record's header. */
	UNWIND_DEFER_BYTES = 32768 - 80,
};

/* What an unwind row says (see src/unwind/table.rs). */
enum unwind_kind {
	UNWIND_NONE = 0,        /* no CFI here */
	UNWIND_CFA_RSP = 1,     /* CFA = rsp + cfa_offset */
	UNWIND_CFA_RBP = 2,     /* CFA = rbp + cfa_offset */
	UNWIND_PLT = 3,         /* CFA = rsp + 8 (+8 if (rip & 15) >= cfa_offset) */
	UNWIND_SIGNAL = 4,      /* a signal trampoline: registers in the ucontext at rsp */
	UNWIND_END = 5,         /* outermost frame */
	UNWIND_UNSUPPORTED = 6, /* CFI the walker can't evaluate */
	UNWIND_STACK_SWITCH = 7, /* calls on another stack (Go): step by frame pointers */
};

/* One row of an unwind table: applies from file offset `pc` to the next
 * row's. The return address is at CFA - 8; %rbp was saved at
 * CFA + 8 * rbp_offset8 unless that is 0. */
struct unwind_row {
	__u32 pc;
	__s16 cfa_offset;
	__u8 kind;
	__s8 rbp_offset8;
};

/* Which table a mapping uses: file offset = address - bias. */
struct mapping_info {
	__u64 bias;
	__u32 row_start; /* first row, in the global row space of the shards */
	__u32 row_count; /* 0: no CFI: frame pointers */
	/* The whole mapping, so the walk can reuse this entry for the next
	 * frames in it without another lookup. */
	__u64 start;
	__u64 end;
};

/* Value of `unwind_procs` (key: tgid): the address space whose mappings
 * are loaded, and where they are: `count` entries of
 * `unwind_mapping_slots` from `start`, sorted by start. A process costs
 * one small map write and a batch write of its few mappings (a fixed
 * 8 KB value per process was most of the unwinder thread's kernel time
 * under process churn). */
struct proc_entry {
	__u32 aspace;
	__u32 count;
	__u32 start;
	__u32 pad;
};

/* A stack walked with unwind tables, or a kernel stack: leaf first. */
struct user_stack {
	__u32 len;
	__u32 truncated;
	__u64 ips[MAX_STACK_DEPTH];
};

enum python_consts {
	/* Python frames kept per sample. */
	PYTHON_MAX_FRAMES = 128,
	/* Threads of an interpreter searched for the sampled one. */
	PYTHON_MAX_THREADS = 64,
	/* python_frame.flags: the last frame one _PyEval_EvalFrameDefault
	 * call ran (the outermost of its group). */
	PYTHON_FRAME_ENTRY = 1,
};

/* Where an interpreter's state is and how it is laid out: written by user
 * space per process (src/python/), read by the frame walk. Offsets in bytes. */
struct python_proc {
	__u64 runtime;         /* address of _PyRuntime */
	__u32 aspace;          /* the address space these hold for */
	__u16 runtime_interp_head; /* _PyRuntime.interpreters.head */
	__u16 interp_threads_head; /* PyInterpreterState.threads.head */
	__u16 thread_next;     /* PyThreadState.next */
	__u16 thread_id;       /* PyThreadState.thread_id (pthread_self: the fs base) */
	__u16 thread_frame;    /* PyThreadState.cframe (<= 3.12) or .current_frame */
	__s16 cframe_frame;    /* _PyCFrame.current_frame; -1: none (3.13) */
	__u16 frame_code;      /* _PyInterpreterFrame.f_code / f_executable */
	__u16 frame_previous;  /* .previous */
	__u16 frame_instr;     /* .prev_instr / .instr_ptr */
	__s16 frame_is_entry;  /* .is_entry (3.11); -1: none */
	__s16 frame_owner;     /* .owner (3.12+: 3 is a C-stack shim); -1: none */
	__u16 pad;
};

/* One Python frame: the code object and the instruction pointer. */
struct python_frame {
	__u64 code;
	__u64 instr;
	__u32 flags;
	__u32 pad;
};

struct python_stack {
	__u32 len;
	__u32 pad;
	struct python_frame frames[PYTHON_MAX_FRAMES];
};

/* A sample deferred for user space to walk (`deferred_stacks`): what the
 * counts key would hold, the user registers, and the user stack from %rsp
 * up (`len` bytes; the record is cut after them). */
struct deferred_stack {
	__u32 tgid;
	__u32 aspace;
	/* The generation the sample belongs to (its interval). */
	__u32 generation;
	/* As in stack_key. */
	__s32 kernel_stack_id;
	char comm[COMM_LEN];
	__u64 kernel_stack_hash;
	/* As in stack_key. */
	__u64 python_stack_hash;
	__u64 ip;
	__u64 sp;
	__u64 bp;
	__u32 len;
	__u32 pad;
	__u8 stack[UNWIND_DEFER_BYTES];
};

/* What `new_tgids` announces: an address space seen for the first time,
 * or one that exited. An exit is followed by `count` struct
 * process_mapping (its executable mappings as it exited) unless count is
 * MAPS_UNREAD; an announcement always says MAPS_UNREAD. */
struct process_seen {
	__u32 tgid;
	__u32 aspace;
	/* 0: first sampled; 1: the unwinder met code in no mapping it knows
	 * (the maps changed); 3: the process exited (PROCESS_EXITED). An
	 * announcement that woke user space has ANNOUNCED_AT_ONCE set too. */
	__u32 refresh;
	__u32 count;
	/* The tgid as the kernel's own pid namespace knows it (proc_gens's
	 * key): user space checks that the address space is still the
	 * process's current one around a late read of its maps. */
	__u32 host_tgid;
	/* A forked child that has not exec'd: its parent's address space
	 * (tgid 0 if none), whose mappings the fork copied. */
	__u32 parent_tgid;
	__u32 parent_aspace;
	__u32 pad;
};

/* The maps are to be read before the others announced with it: they may
 * not outlive the process's next moments (see announce()). */
#define ANNOUNCED_AT_ONCE 4

/* No mappings follow (an announcement; an exit on a kernel without the
 * task_vma iterator, whose address space was gone or its lock taken, or
 * with more mappings than an exit holds). */
#define MAPS_UNREAD 0xffffffffU
/* Executable mappings an exit holds at most. */
#define EXIT_MAPPINGS 96

/* What a mapping is. */
enum mapping_kind {
	MAPPING_ANON = 0,  /* anonymous memory (JIT code) */
	MAPPING_FILE = 1,  /* a file's */
	MAPPING_VDSO = 2,  /* the vDSO */
	MAPPING_NAMED = 3, /* another special mapping with a name ([uprobes]) */
};

/* One version of one file, as the kernel tells it: the inode holding the
 * pages, its modification time and size. */
struct version_key {
	__u64 inode;
	__u64 mtime_ns;
	__u64 size;
	__u32 dev;         /* the kernel's dev_t: major << 20 | minor */
	__u32 pad;
};

/* One executable mapping as the kernel holds it. The file fields are the
 * inode's that holds the pages: they tell one version of a file from
 * another (a rewrite changes mtime or size, a rebuild the inode), while
 * its path, build id and the device and inode users see (an overlay's)
 * are what user space learnt of that version from a live process. */
struct process_mapping {
	__u64 start;
	__u64 end;
	__u64 offset;      /* file offset of start */
	__u64 inode;
	__u64 mtime_ns;
	__u64 size;
	__u32 dev;         /* the kernel's dev_t: major << 20 | minor */
	__u32 kind;        /* enum mapping_kind */
};

#define PROCESS_EXITED 3

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
	__u8 unwind_mode;      /* enum unwind_mode */
	__u8 defer_all;        /* every user stack deferred (benchmarks, tests) */
	__u8 python;           /* walk Python frames of processes in python_procs */
	__u32 self_tgid;
	__u64 pidns_dev;       /* that namespace: stat("/proc/self/ns/pid") */
	__u64 pidns_ino;
};

#endif /* __PROFILE_H */
