/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Python frames (--python auto): for a sample of a CPython 3.8-3.13
 * process, finds the sampled thread's PyThreadState (the interpreter's
 * thread whose thread_id, its pthread_t, is the task's fs base) and walks
 * its chain of frames (_PyInterpreterFrame from 3.11, PyFrameObject
 * before: the layout says where each field is), keeping (code object,
 * instruction pointer or f_lasti) per frame. User space names the code objects and splices the
 * frames in place of the _PyEval_EvalFrameDefault frames that ran them
 * (src/python/).
 *
 * User space owns `python_procs` (one entry per Python process, with its
 * layout); the walk only reads it. Included by profile.bpf.c only.
 */
#ifndef __PYTHON_BPF_H
#define __PYTHON_BPF_H

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct python_proc);
	__uint(max_entries, 4096);
} python_procs SEC(".maps");

struct python_stacks_map {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u64);
	__type(value, struct python_stack);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
};

struct python_stacks_map python_stacks0 SEC(".maps");
struct python_stacks_map python_stacks1 SEC(".maps");

struct python_walk {
	struct python_proc proc;
	__u64 frame;
	__u64 hash;
	struct python_stack stack;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct python_walk);
	__uint(max_entries, 1);
} python_scratch SEC(".maps");

struct python_proc _python_proc = {};
struct python_stack _python_stack = {};
enum python_consts _python_consts = PYTHON_MAX_FRAMES;

#define PY_OWNED_BY_CSTACK 3

static __always_inline __u64 read_ptr(__u64 addr)
{
	__u64 v = 0;

	if (bpf_probe_read_user(&v, sizeof(v), (void *)addr))
		return 0;
	return v;
}

static long python_frame_step(__u32 i, void *unused)
{
	__u32 zero = 0, n;
	struct python_walk *w = bpf_map_lookup_elem(&python_scratch, &zero);
	struct python_frame *f;
	__u8 b = 0;

	if (!w || w->frame == 0)
		return 1;
	n = w->stack.len;
	if (n >= PYTHON_MAX_FRAMES)
		return 1;
	if (w->proc.frame_owner >= 0 &&
	    !bpf_probe_read_user(&b, 1, (void *)(w->frame + w->proc.frame_owner)) &&
	    b == PY_OWNED_BY_CSTACK) {
		/* 3.12+: the shim an evaluation starts with: the frame before it
		 * was the outermost of that evaluation. */
		if (n > 0 && n <= PYTHON_MAX_FRAMES)
			w->stack.frames[(n - 1) & (PYTHON_MAX_FRAMES - 1)].flags |= PYTHON_FRAME_ENTRY;
	} else {
		f = &w->stack.frames[n & (PYTHON_MAX_FRAMES - 1)];
		f->code = read_ptr(w->frame + w->proc.frame_code);
		f->instr = read_ptr(w->frame + w->proc.frame_instr);
		f->flags = 0;
		if (w->proc.frame_is_entry >= 0 &&
		    !bpf_probe_read_user(&b, 1, (void *)(w->frame + w->proc.frame_is_entry)) && b)
			f->flags = PYTHON_FRAME_ENTRY;
		w->stack.len = n + 1;
		w->hash = (w->hash ^ f->code) * 0x100000001b3ULL;
		w->hash = (w->hash ^ f->instr) * 0x100000001b3ULL;
		w->hash ^= (w->hash >> 29) ^ f->flags;
	}
	w->frame = read_ptr(w->frame + w->proc.frame_previous);
	return 0;
}

static long python_thread_step(__u32 i, void *ctx)
{
	__u64 *state = ctx; /* [0]: thread state, [1]: fs base, [2]: found */
	__u32 zero = 0;
	struct python_walk *w = bpf_map_lookup_elem(&python_scratch, &zero);

	if (!w || state[0] == 0)
		return 1;
	if (read_ptr(state[0] + w->proc.thread_id) == state[1]) {
		state[2] = state[0];
		return 1;
	}
	state[0] = read_ptr(state[0] + w->proc.thread_next);
	return 0;
}

/*
 * Walks the Python frames of the current thread, if its process runs a
 * known interpreter, into the scratch; sets *hash. 0 when there are
 * frames, else -ENOENT.
 */
static __always_inline int take_python_stack(__u32 tgid, __u32 aspace, __u64 *hash)
{
	__u32 zero = 0;
	struct python_walk *w;
	struct python_proc *proc = bpf_map_lookup_elem(&python_procs, &tgid);
	struct task_struct *task;
	__u64 state[3] = {}, interp, cframe;

	if (!proc || proc->aspace != aspace)
		return -ENOENT;
	w = bpf_map_lookup_elem(&python_scratch, &zero);
	if (!w)
		return -ENOENT;
	w->proc = *proc;
	task = bpf_get_current_task_btf();
	interp = read_ptr(proc->runtime + proc->runtime_interp_head);
	if (!interp)
		return -ENOENT;
	state[0] = read_ptr(interp + proc->interp_threads_head);
	state[1] = task->thread.fsbase;
	bpf_loop(PYTHON_MAX_THREADS, python_thread_step, state, 0);
	if (!state[2])
		return -ENOENT;
	if (w->proc.cframe_frame >= 0) {
		cframe = read_ptr(state[2] + w->proc.thread_frame);
		w->frame = cframe ? read_ptr(cframe + w->proc.cframe_frame) : 0;
	} else {
		w->frame = read_ptr(state[2] + w->proc.thread_frame);
	}
	w->stack.len = 0;
	w->hash = 0xcbf29ce484222325ULL;
	bpf_loop(PYTHON_MAX_FRAMES + 8, python_frame_step, NULL, 0);
	if (w->stack.len == 0)
		return -ENOENT;
	*hash = (w->hash ^ w->stack.len) | 1;
	return 0;
}

/* Stores the Python stack just taken under `hash`; -ENOMEM when full. */
static __always_inline int store_python_stack(void *python_stacks, __u64 hash)
{
	__u32 zero = 0;
	struct python_walk *w = bpf_map_lookup_elem(&python_scratch, &zero);

	if (!w)
		return -EFAULT;
	return store_by_hash(python_stacks, hash, &w->stack);
}

#endif /* __PYTHON_BPF_H */
