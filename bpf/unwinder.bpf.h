/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The user-stack unwinder (--unwind auto|dwarf): walks a user stack with the
 * unwind tables that user space built from each file's CFI
 * (src/unwind/table.rs) and loaded into `unwind_shards`, using each
 * process's mappings (`unwind_procs` says where in `unwind_mapping_slots`)
 * to know which table and bias an address uses. Frames in code without CFI
 * (JIT code, hand-written asm) are stepped with frame pointers in `auto`
 * mode.
 *
 * Included by profile.bpf.c only. User space owns these maps
 * (src/unwind/loader.rs, src/unwind/mapping_slots.rs); the walk only reads
 * them.
 */
#ifndef __UNWINDER_BPF_H
#define __UNWINDER_BPF_H

struct row_shard {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct unwind_row);
	__uint(max_entries, UNWIND_SHARD_ROWS);
	__uint(map_flags, BPF_F_MMAPABLE);
};

/* Shard n holds rows [n << UNWIND_SHARD_SHIFT, (n + 1) << UNWIND_SHARD_SHIFT)
 * of one global row space; a file's table is a contiguous range of it.
 * Shards are created by user space as the tables need them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, UNWIND_MAX_SHARDS);
	__type(key, __u32);
	__array(values, struct row_shard);
} unwind_shards SEC(".maps");

/* Every loaded process's executable mappings, each process a range
 * (`struct proc_entry`). User space reuses a range only well after the
 * process left `unwind_procs`, so a walk in flight never reads another
 * process's mappings. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct mapping_info);
	__uint(max_entries, UNWIND_MAPPING_SLOTS);
} unwind_mapping_slots SEC(".maps");

/* tgid -> the address space whose mappings are loaded, and where: an
 * exec'd process, or a reused pid, is not walked with stale mappings. Not
 * preallocated: a replaced or deleted entry is freed only after the walks
 * that may hold it are done, so its three fields are always read from one
 * version (a preallocated entry can be reused at once by the next update). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct proc_entry);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
} unwind_procs SEC(".maps");

/* Walked stacks, by hash, one map per generation like the stack maps. */
struct user_stacks_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct user_stack);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
};

struct user_stacks_map user_stacks0 SEC(".maps");
struct user_stacks_map user_stacks1 SEC(".maps");

/* tgid -> when user space was last asked to read its maps again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 4096);
} unwind_refresh SEC(".maps");

#define REFRESH_NS (1000ULL * 1000 * 1000)

struct walk_state {
	__u64 ip;
	__u64 sp;
	__u64 bp;
	__u64 hash;
	/* The process's mappings: `maps_count` slots from `maps_start`. */
	__u32 maps_start;
	/* The last frame was a signal frame: `ip` is where the signal hit, not
	 * a return address. */
	__u32 after_signal;
	/* 1: complete (reached the outermost frame); 2: stopped early; 3: cut
	 * at the frame limit. */
	__u32 done;
	__u32 unknown_mapping;
	/* enum stop_reason, when done == WALK_STOPPED. */
	__u32 stop_reason;
	__u32 maps_count;
	/* The mapping of the last frame: most callers are in the same file. */
	struct mapping_info last;
	struct user_stack stack;
};

/* Per CPU: the walk's state is too large for the BPF stack. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct walk_state);
	__uint(max_entries, 1);
} walk_scratch SEC(".maps");

/* Puts the shared types into BTF so the skeleton generates them. */
struct unwind_row _unwind_row = {};
struct proc_entry _proc_entry = {};
struct mapping_info _mapping_info = {};
struct user_stack _user_stack = {};
enum unwind_mode _unwind_mode = UNWIND_MODE_FP;
enum unwind_kind _unwind_kind = UNWIND_NONE;
enum unwind_consts _unwind_consts = UNWIND_SHARD_SHIFT;

#define WALK_COMPLETE 1
#define WALK_STOPPED 2
#define WALK_CUT 3

static __always_inline long stop(struct walk_state *st, __u32 reason)
{
	st->done = WALK_STOPPED;
	st->stop_reason = reason;
	return 1;
}

/* Offsets in the ucontext a signal trampoline finds at %rsp (x86-64
 * rt_sigframe after its return address was popped): uc_mcontext starts at
 * 40; rbp, rsp and rip are its 11th, 16th and 17th words. */
#define UC_RBP (40 + 10 * 8)
#define UC_RSP (40 + 15 * 8)
#define UC_RIP (40 + 16 * 8)

static __always_inline struct unwind_row *table_row(__u32 index)
{
	__u32 shard = index >> UNWIND_SHARD_SHIFT;
	__u32 slot = index & (UNWIND_SHARD_ROWS - 1);
	void *rows = bpf_map_lookup_elem(&unwind_shards, &shard);

	if (!rows)
		return NULL;
	return bpf_map_lookup_elem(rows, &slot);
}

/*
 * One halving of a binary search: lo = mid when `diff` (the key minus the
 * entry at mid) is not negative, else hi = mid; computed with masks, not a
 * branch. The verifier explores both sides of every branch in a bounded
 * loop, unrolled, along every path that reaches it: with a branch per
 * halving the two searches below made up four fifths of the instructions
 * it checked, and most of the 280 ms it took to load the sampler at each
 * start. Without one, a search is a straight line to it.
 */
static __always_inline void step_search(__u32 *lo, __u32 *hi, __u32 mid, __s64 diff)
{
	/* All ones when diff < 0 (the entry is past the key). */
	__u32 past = (__u32)((__u64)diff >> 63) * 0xffffffffU;

	/* Hidden from clang, which would turn the masks back into a branch. */
	asm volatile("" : "+r"(past));

	*lo = (*lo & past) | (mid & ~past);
	*hi = (mid & past) | (*hi & ~past);
}

/* The last row of [start, start + count) whose pc <= pc, or NULL. */
static __always_inline struct unwind_row *find_row(__u32 start, __u32 count, __u32 pc)
{
	__u32 lo = 0, hi = count, mid;
	struct unwind_row *row;

	for (int i = 0; i < UNWIND_SEARCH_STEPS; i++) {
		if (lo + 1 >= hi)
			break;
		mid = lo + (hi - lo) / 2;
		row = table_row(start + mid);
		if (!row)
			return NULL;
		/* lo = mid if row->pc <= pc, else hi = mid: without a branch. */
		step_search(&lo, &hi, mid, (__s64)pc - (__s64)row->pc);
	}
	row = table_row(start + lo);
	if (!row || row->pc > pc)
		return NULL;
	return row;
}

static __always_inline void ask_refresh(__u32 tgid, __u32 aspace)
{
	__u64 now = bpf_ktime_get_ns();
	__u64 *last = bpf_map_lookup_elem(&unwind_refresh, &tgid);
	struct process_seen *slot;

	if (last && now - *last < REFRESH_NS)
		return;
	bpf_map_update_elem(&unwind_refresh, &tgid, &now, BPF_ANY);
	slot = bpf_ringbuf_reserve(&new_tgids, sizeof(*slot), 0);
	if (!slot)
		return;
	slot->tgid = tgid;
	slot->aspace = aspace;
	slot->refresh = 1;
	slot->count = MAPS_UNREAD;
	slot->host_tgid = bpf_get_current_pid_tgid() >> 32;
	slot->parent_tgid = 0;
	slot->parent_aspace = 0;
	slot->pad = 0;
	bpf_ringbuf_submit(slot, BPF_RB_FORCE_WAKEUP); /* see announce() */
}

/* One frame by frame pointers: the caller's frame pointer and return
 * address are saved at %rbp. Frame pointers only go up the stack, unless
 * the frame switched stacks (`other_stack`: Go's systemstack). */
static __always_inline long fp_step(struct walk_state *st, bool other_stack)
{
	__u64 ra = 0, bp = 0;

	if (st->bp == 0) {
		/* _start clears %rbp: the outermost frame. */
		st->done = WALK_COMPLETE;
		return 1;
	}
	if (st->bp < st->sp && !other_stack)
		return stop(st, STOP_FP_OFF_STACK);
	if (bpf_probe_read_user(&bp, sizeof(bp), (void *)st->bp) ||
	    bpf_probe_read_user(&ra, sizeof(ra), (void *)(st->bp + 8)))
		return stop(st, STOP_BAD_READ);
	st->sp = st->bp + 16;
	st->bp = bp;
	st->ip = ra;
	st->after_signal = 0;
	return 0;
}

/*
 * CPython's perf trampoline (3.12+ with `-X perf`): a stub in anonymous
 * memory, without CFI, that each Python call goes through:
 *     sub $8, %rsp; call *%rcx; add $8, %rsp; ret
 * A return address into it points at the `add`, 6 bytes in; the caller's
 * return address is then 8 bytes above the stack pointer, and %rbp is
 * untouched. Recognised by its bytes, so the walk continues into the
 * `_PyEval_EvalFrameDefault` that called it instead of stopping there.
 */
#define PY_TRAMPOLINE_RA_OFFSET 6
#define PY_TRAMPOLINE_LO 0x8348d1ff08ec8348ULL /* bytes 0-7 */
#define PY_TRAMPOLINE_HI 0xc308c4ULL		/* bytes 8-10 */

static __always_inline bool py_trampoline_step(struct walk_state *st)
{
	__u64 code[2] = {}, ra = 0;

	if (bpf_probe_read_user(code, 11, (void *)(st->ip - PY_TRAMPOLINE_RA_OFFSET)) ||
	    code[0] != PY_TRAMPOLINE_LO || code[1] != PY_TRAMPOLINE_HI)
		return false;
	if (bpf_probe_read_user(&ra, sizeof(ra), (void *)(st->sp + 8)))
		return false;
	st->sp += 16;
	st->ip = ra;
	st->after_signal = 0;
	return true;
}

/* A frame in code without a table: CPython's trampoline, else (auto) by
 * frame pointers, else (dwarf) the end of the walk. */
static __always_inline long no_table_step(struct walk_state *st, __u32 n)
{
	if (n > 0 && !st->after_signal && py_trampoline_step(st))
		return 0;
	if (cfg.unwind_mode == UNWIND_MODE_AUTO)
		return fp_step(st, false);
	return stop(st, STOP_NO_RULE);
}

/* The mapping that holds `pc`: a binary search over the process's sorted
 * mapping slots. */
static __always_inline struct mapping_info *find_mapping(__u32 start, __u32 count, __u64 pc)
{
	__u32 lo = 0, hi = count, mid, slot;
	struct mapping_info *m;

	if (hi == 0 || hi > UNWIND_PROC_MAPPINGS)
		return NULL;
	for (int i = 0; i < UNWIND_PROC_STEPS; i++) {
		if (lo + 1 >= hi)
			break;
		mid = lo + (hi - lo) / 2;
		slot = start + mid;
		m = bpf_map_lookup_elem(&unwind_mapping_slots, &slot);
		if (!m)
			return NULL;
		/* User addresses are below 2^63: the difference's sign compares. */
		step_search(&lo, &hi, mid, (__s64)(pc - m->start));
	}
	slot = start + lo;
	m = bpf_map_lookup_elem(&unwind_mapping_slots, &slot);
	if (!m || pc < m->start || pc >= m->end)
		return NULL;
	return m;
}

static long walk_step(__u32 i, void *unused)
{
	__u32 zero = 0, n;
	struct walk_state *st = bpf_map_lookup_elem(&walk_scratch, &zero);
	struct mapping_info *m = NULL;
	struct unwind_row *row;
	__u64 pc, cfa, ra = 0, bp, ip;

	if (!st)
		return 1;
	ip = st->ip;
	if (ip == 0) {
		st->done = WALK_COMPLETE;
		return 1;
	}
	n = st->stack.len;
	if (n >= MAX_STACK_DEPTH) {
		st->done = WALK_CUT;
		return 1;
	}
	st->stack.ips[n] = ip;
	st->stack.len = n + 1;
	st->hash = (st->hash ^ ip) * 0x100000001b3ULL;
	st->hash ^= st->hash >> 29;

	/* A return address points after its call: look up the call itself. */
	pc = (n == 0 || st->after_signal) ? ip : ip - 1;
	if (pc >= st->last.start && pc < st->last.end) {
		m = &st->last;
	} else {
		m = find_mapping(st->maps_start, st->maps_count, pc);
		if (m)
			st->last = *m;
		else
			st->last.end = 0;
	}
	if (!m) {
		st->unknown_mapping = 1;
		return no_table_step(st, n);
	}
	if (m->row_count == 0)
		return no_table_step(st, n);
	pc -= m->bias;
	row = pc >> 32 ? NULL : find_row(m->row_start, m->row_count, (__u32)pc);
	if (!row || row->kind == UNWIND_NONE || row->kind == UNWIND_UNSUPPORTED)
		return no_table_step(st, n);

	switch (row->kind) {
	case UNWIND_END:
		st->done = WALK_COMPLETE;
		return 1;
	case UNWIND_STACK_SWITCH:
		return fp_step(st, true);
	case UNWIND_SIGNAL: {
		__u64 regs[3] = {};

		if (bpf_probe_read_user(&regs[0], 8, (void *)(st->sp + UC_RBP)) ||
		    bpf_probe_read_user(&regs[1], 8, (void *)(st->sp + UC_RSP)) ||
		    bpf_probe_read_user(&regs[2], 8, (void *)(st->sp + UC_RIP)))
			return stop(st, STOP_BAD_READ);
		st->bp = regs[0];
		st->sp = regs[1];
		st->ip = regs[2];
		st->after_signal = 1;
		return 0;
	}
	case UNWIND_CFA_RSP:
		cfa = st->sp + row->cfa_offset;
		break;
	case UNWIND_CFA_RBP:
		cfa = st->bp + row->cfa_offset;
		break;
	case UNWIND_PLT:
		cfa = st->sp + 8 + (((ip & 15) >= (__u64)row->cfa_offset) ? 8 : 0);
		break;
	default:
		return stop(st, STOP_NO_RULE);
	}
	/* The stack grows down: each caller's frame is above its callee's. */
	if (cfa <= st->sp)
		return stop(st, STOP_NOT_GROWING);
	if (bpf_probe_read_user(&ra, sizeof(ra), (void *)(cfa - 8)))
		return stop(st, STOP_BAD_READ);
	bp = st->bp;
	if (row->rbp_offset8 &&
	    bpf_probe_read_user(&bp, sizeof(bp), (void *)(cfa + (__s64)row->rbp_offset8 * 8)))
		return stop(st, STOP_BAD_READ);
	st->sp = cfa;
	st->bp = bp;
	st->ip = ra;
	st->after_signal = 0;
	return 0;
}

#define PF_KTHREAD 0x00200000

/* The sampled task's user registers: the sample's own if it interrupted
 * user mode, else those saved at kernel entry. -EFAULT for a kernel thread
 * (no user stack). */
static __always_inline int user_regs(struct bpf_perf_event_data *ctx, __u64 *ip, __u64 *sp,
				     __u64 *bp)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u64 cs;

	if (task->flags & PF_KTHREAD)
		return -EFAULT;
	/* The context only allows whole-register loads. */
	cs = *(volatile __u64 *)&ctx->regs.cs;
	if ((cs & 3) == 3) {
		/* The sample interrupted user mode: these are its registers. */
		*ip = ctx->regs.ip;
		*sp = ctx->regs.sp;
		*bp = ctx->regs.bp;
		return 0;
	}
	/* In the kernel: the user registers saved at kernel entry. Read
	 * through a helper, so the compiler can't merge these loads with the
	 * context loads above (the verifier refuses a moved ctx pointer). */
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);

	if (bpf_probe_read_kernel(ip, 8, &regs->ip) || bpf_probe_read_kernel(sp, 8, &regs->sp) ||
	    bpf_probe_read_kernel(bp, 8, &regs->bp))
		return -EFAULT;
	return 0;
}

/*
 * Walks the current task's user stack into the walk scratch and sets *hash
 * to its key. Returns 0 when done, -EFAULT when the task has no user stack.
 * Called once per sample, before the generation's maps are picked: the
 * verifier then checks the walk once, not once per generation (it was half
 * of the profiler's start-up time).
 */
static __always_inline int walk_user_stack(struct bpf_perf_event_data *ctx, __u32 tgid,
					   __u32 aspace, const struct proc_entry *proc,
					   struct sample_stats *stats, __u64 *hash_out)
{
	__u32 zero = 0;
	struct walk_state *st = bpf_map_lookup_elem(&walk_scratch, &zero);
	__u64 hash;

	if (!st)
		return -EFAULT;
	if (user_regs(ctx, &st->ip, &st->sp, &st->bp))
		return -EFAULT;
	st->maps_start = proc->start;
	st->maps_count = proc->count;
	st->hash = 0xcbf29ce484222325ULL;
	st->after_signal = 0;
	st->done = 0;
	st->unknown_mapping = 0;
	st->stop_reason = 0;
	st->last.start = 0;
	st->last.end = 0;
	st->stack.len = 0;
	bpf_loop(MAX_STACK_DEPTH + 1, walk_step, NULL, 0);
	if (st->stack.len == 0)
		return -EFAULT;
	st->stack.truncated = st->done != WALK_COMPLETE;
	stats->unwound++;
	if (st->stack.truncated)
		stats->unwind_truncated++;
	if (st->done == WALK_CUT)
		stats->unwind_cut++;
	if (st->done == WALK_STOPPED) {
		if (st->stop_reason == STOP_BAD_READ)
			stats->stop_bad_read++;
		else if (st->stop_reason == STOP_FP_OFF_STACK)
			stats->stop_fp_off_stack++;
		else if (st->stop_reason == STOP_NO_RULE)
			stats->stop_no_rule++;
		else if (st->stop_reason == STOP_NOT_GROWING)
			stats->stop_not_growing++;
	}
	if (st->unknown_mapping) {
		stats->unwind_unknown_mapping++;
		ask_refresh(tgid, aspace);
	}

	hash = st->hash ^ st->stack.len ^ ((__u64)st->stack.truncated << 63);
	*hash_out = hash | 1;
	return 0;
}

/*
 * Deferred unwinding: a sample of a process whose tables are not in the
 * kernel yet (its first samples, while they are built or read from the
 * cache) is not walked with frame pointers, which stop at the first
 * function built without them. Its registers and the top of its user stack
 * are copied (as `perf --call-graph dwarf` does) and sent to user space,
 * which walks them with the same tables once they are built
 * (src/unwind/deferred.rs), so these samples come out whole, in their own
 * interval.
 */
#define DEFER_RING_BYTES (2 * 1024 * 1024)
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, DEFER_RING_BYTES);
} deferred_stacks SEC(".maps");

/* Per CPU: a record is built here, then copied into the ring buffer at
 * the length it needs. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct deferred_stack);
	__uint(max_entries, 1);
} defer_scratch SEC(".maps");

struct deferred_stack _deferred_stack = {};

#define PAGE_BYTES 4096
#define DEFER_HEADER_BYTES 80

/* Copies the registers and user stack of the current task into the
 * deferral scratch: from %rsp to its page's end, then whole pages until
 * one can't be read (the stack's top) or the record is full. 0 when there
 * is something to send, -EFAULT when not (no user stack). */
static __always_inline int copy_user_stack(struct bpf_perf_event_data *ctx, __u32 tgid,
					   __u32 aspace)
{
	__u32 zero = 0, off, first;
	struct deferred_stack *d = bpf_map_lookup_elem(&defer_scratch, &zero);

	if (!d)
		return -EFAULT;
	if (user_regs(ctx, &d->ip, &d->sp, &d->bp))
		return -EFAULT;
	d->tgid = tgid;
	d->aspace = aspace;
	d->len = 0;
	first = PAGE_BYTES - (d->sp & (PAGE_BYTES - 1));
	if (first > PAGE_BYTES)
		return -EFAULT;
	if (bpf_probe_read_user(d->stack, first, (void *)d->sp))
		return 0; /* no stack to read: the leaf alone */
	off = first;
	for (int i = 0; i < UNWIND_DEFER_BYTES / PAGE_BYTES; i++) {
		if (off > UNWIND_DEFER_BYTES - PAGE_BYTES)
			break;
		if (bpf_probe_read_user(d->stack + off, PAGE_BYTES, (void *)(d->sp + off)))
			break;
		off += PAGE_BYTES;
	}
	d->len = off;
	return 0;
}

/* Sends the sample copied by copy_user_stack, with the rest of its key;
 * 0 when sent, -ENOSPC when the ring buffer is full. */
static __always_inline int send_deferred(__u32 generation, __s32 kernel_stack_id,
					 __u64 kernel_stack_hash, __u64 python_stack_hash)
{
	__u32 zero = 0, len;
	__u64 wake;
	struct deferred_stack *d = bpf_map_lookup_elem(&defer_scratch, &zero);

	if (!d)
		return -EFAULT;
	d->generation = generation;
	d->kernel_stack_id = kernel_stack_id;
	d->kernel_stack_hash = kernel_stack_hash;
	d->python_stack_hash = python_stack_hash;
	bpf_get_current_comm(&d->comm, sizeof(d->comm));
	len = d->len;
	if (len > UNWIND_DEFER_BYTES)
		len = UNWIND_DEFER_BYTES;
	/* The sampler reads this ring at every tick and every announcement,
	 * so a record needs no wake-up of its own; a burst (a big program's
	 * samples while its tables are still built, at 999 Hz) wakes it once
	 * the ring is a quarter full, before the ring can overflow. The ring
	 * is mapped twice in user space: its size is twice in our RSS. */
	wake = bpf_ringbuf_query(&deferred_stacks, BPF_RB_AVAIL_DATA) > DEFER_RING_BYTES / 4 ?
		       BPF_RB_FORCE_WAKEUP :
		       BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&deferred_stacks, d, DEFER_HEADER_BYTES + len, wake))
		return -ENOSPC;
	return 0;
}

/* Stores the stack just walked in a generation's user stacks map under
 * `hash`; -ENOMEM when it did not fit. */
static __always_inline int store_user_stack(void *user_stacks, __u64 hash,
					    struct sample_stats *stats)
{
	__u32 zero = 0;
	struct walk_state *st = bpf_map_lookup_elem(&walk_scratch, &zero);

	if (!st)
		return -EFAULT;
	if (store_by_hash(user_stacks, hash, &st->stack)) {
		stats->unwind_stacks_full++;
		return -ENOMEM;
	}
	return 0;
}

#endif /* __UNWINDER_BPF_H */
