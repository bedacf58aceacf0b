// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The sampler: a perf_event program run at every CPU-clock tick on each
 * profiled CPU. It counts (tgid, user stack, kernel stack, comm) keys, as
 * bcc's profile.py does, into one of two map sets chosen by `generation`, so
 * that user space can cut time into intervals: it flips `generation`, waits
 * for programs in flight, then drains the idle set without racing the
 * writer. Every sample that passes the filters is accounted in `stats`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "profile.h"

#define EEXIST 17
#define ENOENT 2
#define EFAULT 14
#define ENOMEM 12
#define ENOSPC 28
#define BPF_F_USER_STACK (1ULL << 8)
#define BPF_NOEXIST 1

const volatile struct sampler_config cfg = {};

/* Written by user space at run time: which map set the program fills. */
__u32 generation = 0;

struct counts_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct stack_key);
	__type(value, __u64);
	__uint(max_entries, 40960);
};

struct stacks_map {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_STACK_DEPTH * sizeof(__u64));
	__uint(max_entries, 16384);
};

/* Kernel stacks by a hash of their addresses, one map per generation.
 * bpf_get_stackid's stack-trace map keeps one stack per bucket and answers
 * -EEXIST when two stacks meet in one: at profile.py's default size, about
 * one kernel stack in a hundred was lost that way on a default run. Keyed
 * by a 64-bit hash of the whole stack, two stacks never share an entry. */
struct kernel_stacks_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct user_stack);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
};

struct kernel_stacks_map kernel_stacks0 SEC(".maps");
struct kernel_stacks_map kernel_stacks1 SEC(".maps");

/* Per CPU: the kernel stack being taken, and its hash. */
struct kernel_stack_state {
	__u64 hash;
	struct user_stack stack;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct kernel_stack_state);
	__uint(max_entries, 1);
} kernel_stack_scratch SEC(".maps");

struct counts_map counts0 SEC(".maps");
struct counts_map counts1 SEC(".maps");
struct stacks_map stacks0 SEC(".maps");
struct stacks_map stacks1 SEC(".maps");

/* Index: generation. Per CPU, so the program needs no atomics for it. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sample_stats);
	__uint(max_entries, GENERATIONS);
} stats SEC(".maps");

/* -p / -L filters, filled by user space before attach. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 1024);
} tgids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 1024);
} tids SEC(".maps");

/* --cgroupmap / --mntnsmap: the user's pinned hash maps (u64 keys), put in
 * slot 0 of these one-slot map-in-maps after load. Only membership of the
 * key is tested. Referencing them this way keeps our own maps' names (which
 * the skeleton looks up) intact, unlike swapping the map's fd. */
struct id_set {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, 1);
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct id_set);
} cgroup_sets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct id_set);
} mount_ns_sets SEC(".maps");

static __always_inline bool in_set(void *sets, __u64 id)
{
	__u32 zero = 0;
	void *set = bpf_map_lookup_elem(sets, &zero);

	return set && bpf_map_lookup_elem(set, &id);
}

/* An address space's number, and the parent's address space if a fork
 * made it (the child has not exec'd since; parent_tgid 0 otherwise). */
struct aspace_num {
	__u32 n;
	__u32 parent_tgid;   /* as the profiler's pid namespace sees it */
	__u32 parent_aspace;
};

/* Address spaces: tgid -> its current one. A process that execs, or a new
 * process (which may reuse a pid), gets the next number; one that ran
 * before profiling started has none (0). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u32);
	__type(value, struct aspace_num);
	__uint(max_entries, 65536);
} proc_gens SEC(".maps");

/* The last address-space number given out. */
__u32 last_aspace = 0;

/* Address spaces (tgid << 32 | aspace) already announced to user space on
 * `new_tgids`, so it reads their memory maps while they live (an exited
 * process can't be read). The value is when it was first announced; it is
 * announced once more (REANNOUNCED set) when sampled again REANNOUNCE_NS
 * later: a new process's first sample often comes while the dynamic linker
 * is still mapping its libraries. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u64);
	__type(value, __u64);
	__uint(max_entries, 16384);
} seen_tgids SEC(".maps");

#define REANNOUNCED (1ULL << 63)
#define REANNOUNCE_NS (10ULL * 1000 * 1000)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	/* An exit holds its mappings (a few hundred bytes, 5 KB at most),
	 * and exits are read at the next poll, up to 100 ms later. */
	__uint(max_entries, 256 * 1024);
} new_tgids SEC(".maps");

/* Stores `value` under `hash` in a stack map keyed by hash (user, kernel
 * and Python stacks): kept if another CPU stored the same stack first;
 * -ENOMEM when the map is full. */
static __always_inline int store_by_hash(void *map, __u64 hash, void *value)
{
	if (!bpf_map_lookup_elem(map, &hash) && bpf_map_update_elem(map, &hash, value, BPF_NOEXIST) &&
	    !bpf_map_lookup_elem(map, &hash))
		return -ENOMEM;
	return 0;
}

/* Puts stack_key and process_seen into BTF so the skeleton generates them. */
struct stack_key _stack_key = {};
struct process_seen _process_seen = {};

#include "mappings.bpf.h"
#include "unwinder.bpf.h"
#include "python.bpf.h"

static __always_inline void announce(__u32 tgid, __u32 host_tgid, struct aspace_num *num)
{
	__u32 aspace = num ? num->n : 0;
	__u32 parent_tgid = num ? num->parent_tgid : 0;
	__u32 parent_aspace = num ? num->parent_aspace : 0;
	__u64 id = ((__u64)tgid << 32) | aspace;
	__u64 now = bpf_ktime_get_ns();
	__u64 *first = bpf_map_lookup_elem(&seen_tgids, &id);
	struct process_seen *slot;
	bool at_once;

	if (first) {
		if (*first & REANNOUNCED || now - *first < REANNOUNCE_NS)
			return;
		*first |= REANNOUNCED;
	} else if (bpf_map_update_elem(&seen_tgids, &id, &now, BPF_NOEXIST)) {
		return;
	}
	slot = bpf_ringbuf_reserve(&new_tgids, sizeof(*slot), 0);
	if (!slot)
		return;
	/* A forked child that may exec before it is read: its parent's
	 * mappings stand for its own, if the parent was announced (and so
	 * read). */
	if (parent_tgid) {
		__u64 parent_id = ((__u64)parent_tgid << 32) | parent_aspace;

		at_once = !bpf_map_lookup_elem(&seen_tgids, &parent_id);
	} else {
		at_once = !runs_known_executable();
	}
	slot->tgid = tgid;
	slot->aspace = aspace;
	slot->refresh = at_once ? ANNOUNCED_AT_ONCE : 0;
	slot->count = MAPS_UNREAD;
	slot->host_tgid = host_tgid;
	slot->parent_tgid = parent_tgid;
	slot->parent_aspace = parent_aspace;
	slot->pad = 0;
	/* An executable not named yet, or a forked child of a parent never
	 * read (an exec may replace its address space without an exit to
	 * tell it): forced, so that user space reads the maps while they are
	 * there (an exit left unread before it, submitted without a wake-up,
	 * would keep the default, adaptive wake-up quiet). Else read at the
	 * next poll, or named from the exit (see known_versions) or the
	 * parent. */
	bpf_ringbuf_submit(slot, at_once ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

static __always_inline __u32 new_aspace(__u32 tgid, __u32 parent_tgid, __u32 parent_aspace)
{
	struct aspace_num num = {
		.n = __sync_fetch_and_add(&last_aspace, 1) + 1,
		.parent_tgid = parent_tgid,
		.parent_aspace = parent_aspace,
	};

	bpf_map_update_elem(&proc_gens, &tgid, &num, BPF_ANY);
	return num.n;
}

/* exec replaces the address space, keeping the pid: a new number. Nothing
 * is announced here: work follows samples, and a process is announced (and
 * its maps read, its unwind tables loaded) when it is first sampled, so
 * the hundreds of short processes a busy machine starts each second and
 * that are never sampled cost nothing. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(on_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	new_aspace(BPF_CORE_READ(p, tgid), 0, 0);
	return 0;
}

/* A new process (not a thread) has an address space of its own, and may
 * have a pid an earlier process had. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 parent_host = BPF_CORE_READ(parent, tgid), parent_tgid = parent_host;
	struct aspace_num *num;

	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	/* Runs in the parent: its pid as the profiler sees it. */
	if (cfg.use_pidns) {
		struct bpf_pidns_info ns = {};

		parent_tgid = bpf_get_ns_current_pid_tgid(cfg.pidns_dev, cfg.pidns_ino, &ns,
							  sizeof(ns)) ? 0 : ns.tgid;
	}
	num = bpf_map_lookup_elem(&proc_gens, &parent_host);
	new_aspace(BPF_CORE_READ(child, tgid), parent_tgid, num ? num->n : 0);
	return 0;
}

/* A process (its last thread) exits: user space drops what it holds for
 * it (the unwinder's mappings, the process model's live reads) at once,
 * instead of polling /proc. Only processes announced are told of, so the
 * many that were never sampled cost one map lookup. The tracepoint runs in
 * the exiting task, after `signal->live` went down, so the last thread is
 * the one that sees zero (whichever thread it is). */
SEC("tp_btf/sched_process_exit")
int BPF_PROG(on_exit, struct task_struct *p)
{
	__u32 host_tgid = BPF_CORE_READ(p, tgid);
	__u32 tgid = host_tgid, aspace;
	struct aspace_num *num;
	__u64 id;

	if (BPF_CORE_READ(p, signal, live.counter) != 0)
		return 0;
	if (cfg.use_pidns) {
		struct bpf_pidns_info ns = {};

		if (bpf_get_ns_current_pid_tgid(cfg.pidns_dev, cfg.pidns_ino, &ns, sizeof(ns)))
			return 0;
		tgid = ns.tgid;
	}
	num = bpf_map_lookup_elem(&proc_gens, &host_tgid);
	aspace = num ? num->n : 0;
	id = ((__u64)tgid << 32) | aspace;
	if (!bpf_map_lookup_elem(&seen_tgids, &id))
		return 0;
	bpf_map_delete_elem(&seen_tgids, &id);
	send_exit(tgid, host_tgid, aspace);
	return 0;
}

static long kernel_hash_step(__u32 i, void *unused)
{
	__u32 zero = 0;
	struct kernel_stack_state *k = bpf_map_lookup_elem(&kernel_stack_scratch, &zero);

	if (!k || i >= MAX_STACK_DEPTH)
		return 1;
	k->hash = (k->hash ^ k->stack.ips[i]) * 0x100000001b3ULL;
	k->hash ^= k->hash >> 29;
	return 0;
}

/* Takes the sample's kernel stack into the scratch and sets *hash to its
 * key; -EFAULT when there is none (a sample in user mode). Before the
 * generation is picked, like the user walk. */
static __always_inline int take_kernel_stack(struct bpf_perf_event_data *ctx, __u64 *hash)
{
	__u32 zero = 0, len;
	struct kernel_stack_state *k = bpf_map_lookup_elem(&kernel_stack_scratch, &zero);
	long n;

	if (!k)
		return -EFAULT;
	n = bpf_get_stack(ctx, k->stack.ips, sizeof(k->stack.ips), 0);
	if (n < 0)
		return n;
	len = n / 8;
	if (len == 0)
		return -EFAULT;
	if (len > MAX_STACK_DEPTH)
		len = MAX_STACK_DEPTH;
	k->stack.len = len;
	k->stack.truncated = 0;
	k->hash = 0xcbf29ce484222325ULL;
	bpf_loop(len, kernel_hash_step, NULL, 0);
	*hash = (k->hash ^ len) | 1;
	return 0;
}

/* Stores the kernel stack just taken under `hash`; -ENOMEM when the map is
 * full. */
static __always_inline int store_kernel_stack(void *kernel_stacks, __u64 hash)
{
	__u32 zero = 0;
	struct kernel_stack_state *k = bpf_map_lookup_elem(&kernel_stack_scratch, &zero);

	if (!k)
		return -EFAULT;
	return store_by_hash(kernel_stacks, hash, &k->stack);
}

static __always_inline void note_stack_error(__s32 id, __u64 *collision, __u64 *nomem)
{
	if (id >= 0 || id == -EFAULT || id == -ENOENT)
		return;
	if (id == -EEXIST)
		(*collision)++;
	else
		(*nomem)++;
}

/* Where the unwinder keeps this address space's mappings, if it has them. */
static __always_inline struct proc_entry *loaded_mappings(__u32 tgid, __u32 aspace)
{
	struct proc_entry *proc = bpf_map_lookup_elem(&unwind_procs, &tgid);

	return proc && proc->aspace == aspace ? proc : NULL;
}

/* What the unwinder made of a sample's user stack, before a generation's
 * maps are picked: walked (0, with its hash), no user stack (-EFAULT), not
 * walked with tables (NOT_WALKED), or copied to be walked by user space
 * (DEFERRED). */
#define NOT_WALKED 1
#define DEFERRED 2

static __always_inline int sample(struct bpf_perf_event_data *ctx, void *counts, void *stacks,
				  void *user_stacks, void *kernel_stacks, struct sample_stats *st,
				  __u32 tgid, __u32 aspace, __u32 gen, int walked, __u64 hash,
				  int kernel, __u64 khash, void *python_stacks, int python, __u64 pyhash)
{
	struct stack_key key = {};
	__u64 *val, one = 1;
	int err;

	key.user_stack_id = -ENOENT;
	key.kernel_stack_id = kernel;
	if (kernel == 0) {
		key.kernel_stack_id = store_kernel_stack(kernel_stacks, khash);
		if (key.kernel_stack_id == 0) {
			key.kernel_stack_id = -ENOENT;
			key.kernel_stack_hash = khash;
		}
	}
	note_stack_error(key.kernel_stack_id, &st->kernel_stack_collision, &st->kernel_stack_nomem);
	if (python == 0) {
		if (store_python_stack(python_stacks, pyhash) == 0) {
			key.python_stack_hash = pyhash;
			st->python_walked++;
		} else {
			st->python_stacks_full++;
		}
	}
	if (walked == DEFERRED) {
		/* Counted in user space, once walked; `deferred` is bumped after
		 * the record is out, so a drained generation has all of its. */
		if (send_deferred(gen, key.kernel_stack_id, key.kernel_stack_hash,
				  key.python_stack_hash) == 0) {
			st->deferred++;
			return 0;
		}
		st->deferred_ring_full++;
		walked = NOT_WALKED;
	}
	if (walked != NOT_WALKED) {
		if (walked == 0)
			walked = store_user_stack(user_stacks, hash, st);
		if (walked)
			key.user_stack_id = walked;
		else
			key.user_stack_hash = hash;
	} else if (cfg.user_stacks) {
		if (cfg.unwind_mode != UNWIND_MODE_FP && tgid != 0)
			st->unwind_not_loaded++;
		key.user_stack_id = bpf_get_stackid(ctx, stacks, BPF_F_USER_STACK);
	}
	note_stack_error(key.user_stack_id, &st->user_stack_collision, &st->user_stack_nomem);

	key.tgid = tgid;
	key.aspace = aspace;
	bpf_get_current_comm(&key.comm, sizeof(key.comm));

	val = bpf_map_lookup_elem(counts, &key);
	if (!val) {
		err = bpf_map_update_elem(counts, &key, &one, BPF_NOEXIST);
		if (err == 0) {
			st->counted++;
			return 0;
		}
		if (err != -EEXIST) {
			/* -E2BIG: the hash is full. */
			st->lost_hash_full++;
			return 0;
		}
		/* Another CPU inserted the same key meanwhile. */
		val = bpf_map_lookup_elem(counts, &key);
		if (!val) {
			st->lost_hash_full++;
			return 0;
		}
	}
	__sync_fetch_and_add(val, 1);
	st->counted++;
	return 0;
}

SEC("perf_event")
int do_perf_event(struct bpf_perf_event_data *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 host_tgid = id >> 32;
	__u32 tgid = host_tgid;
	__u32 tid = (__u32)id;
	__u32 gen, aspace;
	struct aspace_num *aspace_num;
	struct sample_stats *st;
	int walked = NOT_WALKED, kernel = -ENOENT, python = -ENOENT;
	__u64 hash = 0, khash = 0, pyhash = 0;

	if (cfg.use_pidns) {
		/* As upstream profile.py: pids as the profiler's namespace sees
		 * them; tasks it cannot see are not sampled. */
		struct bpf_pidns_info ns = {};

		if (bpf_get_ns_current_pid_tgid(cfg.pidns_dev, cfg.pidns_ino, &ns, sizeof(ns)))
			return 0;
		tgid = ns.tgid;
		tid = ns.pid;
	}

	if (!cfg.include_idle && tgid == 0)
		return 0;
	if (cfg.exclude_self && tgid == cfg.self_tgid)
		return 0;
	if (cfg.filter_tgid && !bpf_map_lookup_elem(&tgids, &tgid))
		return 0;
	if (cfg.filter_tid && !bpf_map_lookup_elem(&tids, &tid))
		return 0;
	if (cfg.filter_cgroup && !in_set(&cgroup_sets, bpf_get_current_cgroup_id()))
		return 0;
	if (cfg.filter_mntns) {
		struct task_struct *task = (struct task_struct *)bpf_get_current_task();
		__u64 inum = BPF_CORE_READ(task, nsproxy, mnt_ns, ns.inum);

		if (!in_set(&mount_ns_sets, inum))
			return 0;
	}

	/* The exec and fork hooks know tasks by their host pid. */
	aspace_num = bpf_map_lookup_elem(&proc_gens, &host_tgid);
	aspace = aspace_num ? aspace_num->n : 0;
	if (tgid != 0)
		announce(tgid, host_tgid, aspace_num);

	gen = generation & 1;
	st = bpf_map_lookup_elem(&stats, &gen);
	if (!st)
		return 0;
	st->taken++;
	if (cfg.user_stacks && cfg.unwind_mode != UNWIND_MODE_FP && tgid != 0) {
		struct proc_entry *proc = cfg.defer_all ? NULL : loaded_mappings(tgid, aspace);

		if (proc)
			walked = walk_user_stack(ctx, tgid, aspace, proc, st, &hash);
		else
			walked = copy_user_stack(ctx, tgid, aspace) == 0 ? DEFERRED : -EFAULT;
	}
	if (cfg.kernel_stacks)
		kernel = take_kernel_stack(ctx, &khash);
	if (cfg.python && cfg.user_stacks && tgid != 0)
		python = take_python_stack(tgid, aspace, &pyhash);
	if (gen)
		return sample(ctx, &counts1, &stacks1, &user_stacks1, &kernel_stacks1, st, tgid,
			      aspace, gen, walked, hash, kernel, khash, &python_stacks1, python,
			      pyhash);
	return sample(ctx, &counts0, &stacks0, &user_stacks0, &kernel_stacks0, st, tgid, aspace,
		      gen, walked, hash, kernel, khash, &python_stacks0, python, pyhash);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
