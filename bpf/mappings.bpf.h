/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * An exit tells the process's executable mappings, read as it exits.
 *
 * User space reads a process's maps from /proc when it is announced, but a
 * short process (a shell's `true`, a build's `sha256sum`) is often gone by
 * then: under a churn of them a third of the reads found nothing, and their
 * samples' user frames were left unnamed. The exit tracepoint still runs
 * with the address space in place (on Linux 6.18) and with interrupts on,
 * where the task_vma iterator (Linux 6.7) may walk it; the sampling tick
 * can't (Linux refuses it with interrupts off). Where the kernel has no
 * such iterator, the address space is gone already or its lock is taken,
 * the exit says MAPS_UNREAD. User space names the files from what live
 * processes' maps said of the same versions.
 */
#ifndef __MAPPINGS_BPF_H
#define __MAPPINGS_BPF_H

#define VM_EXEC 0x00000004UL
#define PAGE_SHIFT 12

extern int bpf_iter_task_vma_new(struct bpf_iter_task_vma *it, struct task_struct *task,
				 __u64 addr) __weak __ksym;
extern struct vm_area_struct *bpf_iter_task_vma_next(struct bpf_iter_task_vma *it) __weak __ksym;
extern void bpf_iter_task_vma_destroy(struct bpf_iter_task_vma *it) __weak __ksym;
/* An exit as it is built: the header, then its mappings (only the ones
 * read are sent). Per CPU: the exit tracepoint is the only writer, and
 * does not run nested on one CPU. */
struct exit_record {
	struct process_seen head;
	struct process_mapping maps[EXIT_MAPPINGS];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct exit_record);
	__uint(max_entries, 1);
} exit_scratch SEC(".maps");

/* How struct inode held its modification time before Linux 6.11 (one
 * timespec64, named __i_mtime in 6.7-6.10): CO-RE picks what this kernel
 * has. */
struct inode___timespec {
	struct timespec64 i_mtime;
} __attribute__((preserve_access_index));
struct inode___hidden_timespec {
	struct timespec64 __i_mtime;
} __attribute__((preserve_access_index));

/* An inode's modification time in ns, as stat() gives it. */
static __always_inline __u64 inode_mtime_ns(struct inode *inode)
{
	struct inode___timespec *old = (void *)inode;
	struct inode___hidden_timespec *hidden = (void *)inode;

	if (bpf_core_field_exists(inode->i_mtime_sec))
		return (__u64)BPF_CORE_READ(inode, i_mtime_sec) * 1000000000ULL +
		       BPF_CORE_READ(inode, i_mtime_nsec);
	if (bpf_core_field_exists(hidden->__i_mtime))
		return (__u64)BPF_CORE_READ(hidden, __i_mtime.tv_sec) * 1000000000ULL +
		       BPF_CORE_READ(hidden, __i_mtime.tv_nsec);
	if (bpf_core_field_exists(old->i_mtime))
		return (__u64)BPF_CORE_READ(old, i_mtime.tv_sec) * 1000000000ULL +
		       BPF_CORE_READ(old, i_mtime.tv_nsec);
	return 0;
}

/* File versions user space has named (a live process's maps showed their
 * paths). A process whose executable is one of them is announced without
 * waking user space: read at its next poll if it still runs, else named
 * from what its exit tells. Only a process of an executable not named yet
 * must be read at once, while it lives. Written by user space only; a
 * plain hash, so nothing user space still relies on is evicted. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct version_key);
	__type(value, __u8);
	__uint(max_entries, 8192);
} known_versions SEC(".maps");

/* Puts process_mapping and version_key into BTF so the skeleton generates
 * them. */
struct process_mapping _process_mapping = {};
struct version_key _version_key = {};

/* Whether the current task's executable is a version user space named
 * (true as well for a kernel thread: it has nothing to read). */
static __always_inline bool runs_known_executable(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct inode *inode = BPF_CORE_READ(task, mm, exe_file, f_inode);
	struct version_key k = {};

	if (!BPF_CORE_READ(task, mm))
		return true;
	if (!inode)
		return false;
	k.inode = BPF_CORE_READ(inode, i_ino);
	k.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	k.mtime_ns = inode_mtime_ns(inode);
	k.size = BPF_CORE_READ(inode, i_size);
	return bpf_map_lookup_elem(&known_versions, &k) != NULL;
}

static __always_inline void read_mapping(struct process_mapping *m, struct vm_area_struct *vma,
					 struct mm_struct *mm)
{
	struct file *file = vma->vm_file;

	m->start = vma->vm_start;
	m->end = vma->vm_end;
	m->offset = 0;
	m->inode = 0;
	m->mtime_ns = 0;
	m->size = 0;
	m->dev = 0;
	if (file) {
		struct inode *inode = file->f_inode;

		m->kind = MAPPING_FILE;
		m->offset = (__u64)vma->vm_pgoff << PAGE_SHIFT;
		m->inode = inode->i_ino;
		m->dev = inode->i_sb->s_dev;
		m->mtime_ns = inode_mtime_ns(inode);
		m->size = inode->i_size;
	} else if ((__u64)mm->context.vdso == vma->vm_start) {
		m->kind = MAPPING_VDSO;
	} else if (vma->vm_ops) {
		m->kind = MAPPING_NAMED;
	} else {
		m->kind = MAPPING_ANON;
	}
}

/* Fills `a->maps` with the current task's executable mappings, in address
 * order, and sets `a->head.count` to how many; MAPS_UNREAD if they could
 * not all be read. The count lives in the map value, not in a register:
 * the verifier then sees one unknown count below the bound at every turn
 * of the loop, and checks its body once instead of once per count. */
static __always_inline void read_mappings(struct exit_record *a)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct mm_struct *mm = task->mm;
	struct bpf_iter_task_vma it;
	struct vm_area_struct *vma;

	a->head.count = MAPS_UNREAD;
	if (!bpf_ksym_exists(bpf_iter_task_vma_new))
		return;
	/* A kernel thread, or an address space already let go. */
	if (!mm)
		return;
	a->head.count = 0;
	if (bpf_iter_task_vma_new(&it, task, 0)) {
		bpf_iter_task_vma_destroy(&it);
		a->head.count = MAPS_UNREAD;
		return;
	}
	while ((vma = bpf_iter_task_vma_next(&it))) {
		__u32 n = a->head.count;

		if (!(vma->vm_flags & VM_EXEC))
			continue;
		if (n >= EXIT_MAPPINGS) {
			a->head.count = MAPS_UNREAD;
			break;
		}
		read_mapping(&a->maps[n], vma, mm);
		a->head.count = n + 1;
	}
	bpf_iter_task_vma_destroy(&it);
}

/* Tells user space that (tgid, aspace), the current task's, exits, with
 * its executable mappings. Without a wake-up: nothing waits on an exit
 * (user space lets a space go an interval later), and under a churn of
 * short processes a wake-up per exit was half the sampling thread's
 * wake-ups. Read at the next poll: an announcement's, the tick's or the
 * cut's. */
static __always_inline void send_exit(__u32 tgid, __u32 host_tgid, __u32 aspace)
{
	__u32 zero = 0;
	struct exit_record *a = bpf_map_lookup_elem(&exit_scratch, &zero);
	__u64 size;

	if (!a)
		return;
	a->head.tgid = tgid;
	a->head.host_tgid = host_tgid;
	a->head.parent_tgid = 0;
	a->head.parent_aspace = 0;
	a->head.pad = 0;
	a->head.aspace = aspace;
	a->head.refresh = PROCESS_EXITED;
	read_mappings(a);
	size = sizeof(a->head);
	if (a->head.count != MAPS_UNREAD && a->head.count <= EXIT_MAPPINGS)
		size += (__u64)a->head.count * sizeof(struct process_mapping);
	if (size > sizeof(*a))
		size = sizeof(*a);
	bpf_ringbuf_output(&new_tgids, a, size, BPF_RB_NO_WAKEUP);
}

#endif /* __MAPPINGS_BPF_H */
