// SPDX-License-Identifier: GPL-2.0-only
/* mpxtrace kernel program (BCC C): follow every VMA whose vm_flags carry TRACK_MASK.
 *
 * Built by mpxtrace/program.py, which probes the running kernel and passes:
 *   TRACK_MASK            the vm_flags bits to follow (filtered here, in the kernel)
 *   USE_RINGBUF           BPF ring buffer, else perf buffer
 *   PID_FILTER            only processes in `pids` (and address spaces they own)
 *   TRACER_TGID           our own pid: our ring-buffer mmaps are not the user's memory
 *   HOOK_x / FENTRY_x     which hooks exist on this kernel, and which attach by fentry
 *   NARGS_x, ARG_x_y      argument count and positions, read from BTF
 *   OFF_x                 structure field offsets, read from BTF (or offsetof() with headers)
 * so this file never compares kernel versions: it only uses what the probe found.
 *
 * Event meaning: see mpxtrace_event.h.  The per-thread frame stack tells a nested call
 * why it runs: a VMA freed inside a merge is not unmapped memory; a merge inside
 * mmap_region or copy_vma reports its result to that caller's single event.
 */
#include <uapi/linux/ptrace.h>
#include "mpxtrace_event.h"

#ifndef USE_BTF_OFFSETS
#include <linux/mm_types.h>
#include <linux/sched.h>
#define OFF_VMA_START offsetof(struct vm_area_struct, vm_start)
#define OFF_VMA_END offsetof(struct vm_area_struct, vm_end)
#define OFF_VMA_MM offsetof(struct vm_area_struct, vm_mm)
#define OFF_VMA_FLAGS offsetof(struct vm_area_struct, vm_flags)
#define OFF_VMA_PGOFF offsetof(struct vm_area_struct, vm_pgoff)
#define OFF_TASK_MM offsetof(struct task_struct, mm)
#define OFF_TASK_PID offsetof(struct task_struct, pid)
#define OFF_TASK_TGID offsetof(struct task_struct, tgid)
#define OFF_TASK_COMM offsetof(struct task_struct, comm)
#endif

#define MAX_DEPTH 8 /* power of two: the index is masked for the verifier */

/* A frame index the verifier can bound: the volatile round trip stops clang from dropping
 * the mask when it can prove the range itself, which the verifier cannot follow. */
static __always_inline u32 frame_index(u64 d)
{
	volatile u32 raw = (u32)d;
	return raw & (MAX_DEPTH - 1);
}
/* PAGE_SHIFT_, VM_LOCKED_MASK_ (VM_LOCKED | VM_LOCKONFAULT) and VM_ACCOUNT_ come from
 * mpxtrace/flags.py as -D values: Python owns the flag values. */
/* MUNLOCK_BEFORE_FREE (planned where munlock_vma_pages_range exists): munmap clears VM_LOCKED
 * before the VMA is freed, so a free cannot be judged by its flags alone. */
#ifdef MUNLOCK_BEFORE_FREE
#define CLEARED_BEFORE_FREE VM_LOCKED_MASK_
#else
#define CLEARED_BEFORE_FREE 0ULL
#endif

enum frame_kind { FR_NONE = 0, FR_MMAP = 1, FR_MERGE = 2, FR_COPY = 3, FR_EXIT = 4, FR_GROW = 5 };
#define PAGE_SIZE_ (1ULL << PAGE_SHIFT_)

struct frame {
	u64 kind;
	u64 mm;
	u64 start;
	u64 end;
	u64 flags;
	u64 aux;
	u64 aux2;
	u64 ext_start;
	u64 ext_end;
	u64 ctx;  /* EVCTX_* bits for the event this call reports */
	u64 ptr;  /* a pointer argument the return needs (copy_vma: the source VMA slot) */
};

struct thread_frames {
	u64 depth;
	struct frame f[MAX_DEPTH];
};

#ifdef USE_RINGBUF
BPF_RINGBUF_OUTPUT(events, RINGBUF_PAGES);
/* events written per CPU: the reader is woken every RINGBUF_WAKE_EVERY-th (submit()) */
BPF_PERCPU_ARRAY(ring_writes, u64, 1);
#define RB_NO_WAKEUP_ 1    /* include/uapi/linux/bpf.h BPF_RB_NO_WAKEUP, 5.8+ like the ring */
#define RB_FORCE_WAKEUP_ 2 /* BPF_RB_FORCE_WAKEUP */
#else
BPF_PERF_OUTPUT(events);
#endif
/* MAPPED_ARRAY_FLAGS: BPF_F_MMAPABLE where the kernel has it, so the front end reads them
 * (and seed_mm) without map syscalls (each holds bpf_prog_active: see mpxtrace/kernel/mappedarray.py) */
BPF_F_TABLE("array", int, u64, counters, CNT_MAX, MAPPED_ARRAY_FLAGS);
#ifdef LOSS_BY_SPACE
/* events the stream refused, by address space (MPXTRACE_LOST_SPACE_SLOTS; mapped like the counters) */
BPF_F_TABLE("array", int, u64, lost_spaces, MPXTRACE_LOST_SPACE_SLOTS, MAPPED_ARRAY_FLAGS);
#endif
/* enum mpxtrace_tally: per-kind event counts and mmap/unmap size histograms, mapped the same way */
BPF_F_TABLE("array", int, u64, tallies, TALLY_MAX, MAPPED_ARRAY_FLAGS);

/* Both arrays are shared by every CPU: adds are atomic.  BCC's increment() is a load and a
 * store (iovisor/bcc#2490), and two CPUs counting at once lost counts: 1 to 3 of 80,000 lost
 * events went unreported on every lab kernel (tests/lab/test_lab_tallies.py found it). */
static __always_inline void count_loss(int index, u64 n)
{
	u64 *slot = counters.lookup(&index);
	if (slot)
		__sync_fetch_and_add(slot, n);
}

/* A refused event: its address space's slot first, then the total, so a reader that sees the
 * total grow finds the slot already counted (mpxtrace/lostspaces.py). */
static __always_inline void count_refused(const u64 *event_mm)
{
#ifdef LOSS_BY_SPACE
	/* read as a number: under fentry the mm came by a typed load, and 5.10's verifier refuses
	 * arithmetic on such a pointer ("math between ptr_ pointer and ... is not allowed") */
	u64 mm = 0;
	bpf_probe_read(&mm, sizeof(mm), (void *)event_mm);
	int slot = (int)((mm * MPXTRACE_LOST_SPACE_HASH) >> MPXTRACE_LOST_SPACE_SHIFT);
	u64 *count = lost_spaces.lookup(&slot);
	if (count)
		__sync_fetch_and_add(count, 1);
#endif
	count_loss(CNT_LOST_SUBMIT, 1);
}

static __always_inline void tally(int index, u64 value)
{
	u64 *slot = tallies.lookup(&index);
	if (slot)
		__sync_fetch_and_add(slot, value);
}
/* A thread's entry stays when its depth returns to 0: an insert and a delete per flagged call
 * cost more than the lookup that finds it again.  LRU makes room for new threads by dropping
 * idle ones (an entry in use was touched by its push, microseconds ago). */
BPF_TABLE("lru_hash", u64, struct thread_frames, frames, 16384);
BPF_PERCPU_ARRAY(frame_init, struct thread_frames, 1);
BPF_HASH(tracked, u64, u8, 65536); /* address spaces holding flagged memory */
/* the mm behind the /proc/PID/statm we read last; mapped like the counters */
BPF_F_TABLE("array", int, u64, seed_mm, 1, MAPPED_ARRAY_FLAGS);

/* An mremap() in progress, by thread: copy_vma() learns how much of the source moves
 * (old_len; the VMA may extend past it) and whether it stays mapped (MREMAP_DONTUNMAP). */
struct mremap_call {
	u64 mm;
	u64 addr;
	u64 old_len;
	u64 new_len;
	u64 flags;
};
BPF_HASH(mremaps, u64, struct mremap_call, 4096);
/* include/uapi/linux/mman.h, 5.7+: e346b3813067 ("mm/mremap: add MREMAP_DONTUNMAP to mremap()") */
#define MREMAP_DONTUNMAP_ 4
#ifdef PID_FILTER
BPF_HASH(pids, u32, u8, 1024);
#endif

/* ---- reading kernel memory by BTF offset ------------------------------------------ */
static __always_inline u64 read_u64(u64 base, u64 off)
{
	u64 v = 0;
	bpf_probe_read(&v, sizeof(v), (void *)(base + off));
	return v;
}

static __always_inline u32 read_u32(u64 base, u64 off)
{
	u32 v = 0;
	bpf_probe_read(&v, sizeof(v), (void *)(base + off));
	return v;
}

struct vma_view {
	u64 mm, start, end, flags;
};

static __always_inline void read_vma(u64 vma, struct vma_view *v)
{
	v->mm = read_u64(vma, OFF_VMA_MM);
	v->start = read_u64(vma, OFF_VMA_START);
	v->end = read_u64(vma, OFF_VMA_END);
	/* vm_flags_t, or the first word of the vma_flags_t bitmap that replaces it */
	v->flags = read_u64(vma, OFF_VMA_FLAGS);
}

/* Under fentry the verifier knows each argument's BTF type: a field at its BTF offset is one
 * plain load (checked against BTF, a fault caught by the JIT's exception table), where
 * bpf_probe_read is a helper call.  Only for pointers straight from fentry arguments (and
 * the pointer fields loaded from them); kprobes see raw registers and use read_u64. */
#define BTF_U64(ptr, off) (*(u64 *)((ptr) + (off)))
#define BTF_VMA(vma, v)                                      \
	do {                                                  \
		(v)->mm = BTF_U64(vma, OFF_VMA_MM);           \
		(v)->start = BTF_U64(vma, OFF_VMA_START);     \
		(v)->end = BTF_U64(vma, OFF_VMA_END);         \
		(v)->flags = BTF_U64(vma, OFF_VMA_FLAGS);     \
	} while (0)

static __always_inline u64 current_mm(void)
{
	return read_u64((u64)bpf_get_current_task(), OFF_TASK_MM);
}

static __always_inline int is_err(u64 ret)
{
	return ret == 0 || ret >= (u64)-4095;
}

static __always_inline int is_tracked(u64 mm)
{
	return tracked.lookup(&mm) != 0;
}

/* ---- the event stream -------------------------------------------------------------- */
/* Log2Histogram's bucket (mpxtrace/stats.py): the value's bit length */
static __always_inline int log2_bucket(u64 value)
{
	int bucket = value ? bpf_log2l(value) : 0;
	return bucket < MPXTRACE_TALLY_BUCKETS ? bucket : MPXTRACE_TALLY_BUCKETS - 1;
}

/* A flagged mapping's birth, by where it starts: its lifetime is counted when exactly that
 * range is destroyed (a mapping split, merged or moved since is not; LRU forgets those). */
struct birth_key {
	u64 mm;
	u64 start;
};
struct birth {
	u64 end;
	u64 ts_ns;
};
BPF_TABLE("lru_hash", struct birth_key, struct birth, births, 65536);

/* What the summary needs even when the stream overflows, aggregated here (bpftrace's way):
 * every event counted by kind, the sizes of flagged mappings made and VMAs destroyed, and the
 * lifetimes of mappings destroyed as they were made (the timestamps the two events carry, so
 * the stream's lifetime histogram, where it lost nothing, is the same). */
static __always_inline void tally_event(const struct mpxtrace_event *e)
{
	tally(TALLY_EMITTED + e->kind, 1);
	u64 size = e->end - e->start;
	struct birth_key key = {.mm = e->mm, .start = e->start};
	if (e->kind == EV_MAP) {
		tally(TALLY_MAP_BYTES, size);
		tally(TALLY_MAP_LOG2 + log2_bucket(size), 1);
		struct birth born = {.end = e->end, .ts_ns = e->ts_ns};
		births.update(&key, &born);
	} else if (e->kind == EV_UNMAP) {
		tally(TALLY_UNMAP_BYTES, size);
		tally(TALLY_UNMAP_LOG2 + log2_bucket(size), 1);
		struct birth *born = births.lookup(&key);
		if (born) {
			if (born->end == e->end && e->ts_ns >= born->ts_ns) {
				u64 lived = e->ts_ns - born->ts_ns;
				tally(TALLY_LIFETIME_NS, lived);
				tally(TALLY_LIFETIME_LOG2 + log2_bucket(lived), 1);
			}
			births.delete(&key);
		}
	}
}

static __always_inline void submit(void *ctx, struct mpxtrace_event *e)
{
	tally_event(e);
#ifdef USE_RINGBUF
	/* By default the ring wakes its reader for every record it finds waiting (an irq_work on
	 * this CPU, then the tracer scheduled for one record): more than the event costs.  Wake it
	 * every RINGBUF_WAKE_EVERY-th record per CPU; the front end reads the rest after its poll's
	 * timeout.  Forced: the adaptive wakeup skips a reader that has unread records. */
	int zero = 0;
	u64 *writes = ring_writes.lookup(&zero);
	u64 wake = RB_NO_WAKEUP_;
	if (!writes || ++*writes % RINGBUF_WAKE_EVERY == 0)
		wake = RB_FORCE_WAKEUP_;
	if (events.ringbuf_output(e, sizeof(*e), wake) != 0)
		count_refused(&e->mm);
#else
	/* -ENOSPC when the CPU's buffer is full where perf_event_output() returns int (void in
	 * 5.0, int in 5.3; the commit was not found); older kernels return 0 and user space
	 * relies on the perf lost callback, which only reports at the next write */
	if (events.perf_submit(ctx, e, sizeof(*e)) != 0)
		count_refused(&e->mm);
#endif
}

/* One event, filtered: never our own ring-buffer mmaps; with -p only the processes
 * followed (and address spaces already holding flagged memory). */
static __always_inline void emit_ctx(void *ctx, u32 kind, u64 mm, u64 start, u64 end, u64 flags,
				     u64 ext_start, u64 ext_end, u64 aux, u64 aux2, u32 ctx_bits)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	u64 cur_mm = current_mm();
	if (tgid == TRACER_TGID && cur_mm == mm)
		return;
#ifdef PID_FILTER
	if (!pids.lookup(&tgid) && !is_tracked(mm) && kind != EV_TASK)
		return;
#endif
	struct mpxtrace_event e = {
		.ts_ns = bpf_ktime_get_ns(),
		.mm = mm,
		.start = start,
		.end = end,
		.vm_flags = flags,
		.ext_start = ext_start,
		.ext_end = ext_end,
		.aux = aux,
		.aux2 = aux2,
		.tgid = tgid,
		.tid = (u32)id,
		.kind = kind,
		.ctx = ctx_bits | (cur_mm == mm ? EVCTX_OWNER : 0),
	};
	bpf_get_current_comm(&e.comm, sizeof(e.comm));
	if (kind != EV_TASK && kind != EV_MM_EXIT && !is_tracked(mm)) {
		/* a lookup first: an update, even of an existing key, costs an element swap */
		u8 one = 1;
		if (tracked.update(&mm, &one) != 0)
			count_loss(CNT_MAP_FULL, 1);
	}
	submit(ctx, &e);
}

static __always_inline void emit(void *ctx, u32 kind, u64 mm, u64 start, u64 end, u64 flags,
				 u64 ext_start, u64 ext_end, u64 aux, u64 aux2)
{
	emit_ctx(ctx, kind, mm, start, end, flags, ext_start, ext_end, aux, aux2, 0);
}

/* ---- per-thread frames ---------------------------------------------------------------- */
static __always_inline struct thread_frames *frames_of(u64 id, int create)
{
	struct thread_frames *st = frames.lookup(&id);
	if (st || !create)
		return st;
	int zero = 0;
	struct thread_frames *init = frame_init.lookup(&zero);
	if (!init)
		return 0;
	if (frames.update(&id, init) != 0) {
		count_loss(CNT_MAP_FULL, 1);
		return 0;
	}
	return frames.lookup(&id);
}

static __always_inline struct frame *push(u64 kind, u64 mm, u64 start, u64 end, u64 flags, u64 aux,
					  u64 aux2)
{
	u64 id = bpf_get_current_pid_tgid();
	struct thread_frames *st = frames_of(id, 1);
	if (!st)
		return 0;
	u64 d = st->depth;
	/* mmap_region, copy_vma, exit_mmap and expand_downwards never run inside one another or
	 * inside a merge: frames found under one are left by a return we never saw (a kretprobe
	 * miss, or an fexit the kernel skipped while a preempted task ran it on this CPU). */
	if (kind != FR_MERGE && d > 0) {
		count_loss(CNT_FRAME_STALE, d);
		d = 0;
	}
	if (d >= MAX_DEPTH) {
		count_loss(CNT_FRAME_OVERFLOW, 1);
		return 0;
	}
	struct frame *f = &st->f[frame_index(d)];
	f->kind = kind;
	f->mm = mm;
	f->start = start;
	f->end = end;
	f->flags = flags;
	f->aux = aux;
	f->aux2 = aux2;
	f->ext_start = 0;
	f->ext_end = 0;
	f->ctx = 0;
	f->ptr = 0;
	st->depth = d + 1;
	return f;
}

/* pop()'s mm for "the current task's": read only once a frame is there to match, so a return
 * in a thread with no frames (an unflagged call, the common case) costs one map lookup. */
#define MM_CURRENT 1

/* The innermost frame of `kind`, popped into *out.  Frames are pushed only for calls that
 * matter, so a return whose entry pushed nothing may find another kind on top: that is not
 * its frame.  The return of a call of `kind` seen while frames of the same `kind` and
 * `mm` sit under others on top means those others never saw their return (a kretprobe
 * miss): they are unwound and counted, so a lost return cannot mislead later calls. */
static __always_inline int pop(u64 kind, u64 mm, struct frame *out) /* mm 0: any; or MM_CURRENT */
{
	u64 id = bpf_get_current_pid_tgid();
	struct thread_frames *st = frames_of(id, 0);
	if (!st)
		return 0;
	u64 d = st->depth;
	if (d == 0 || d > MAX_DEPTH)
		return 0;
	if (mm == MM_CURRENT)
		mm = current_mm();
	u64 found = MAX_DEPTH;
#pragma unroll
	for (int i = MAX_DEPTH - 1; i >= 0; i--) {
		if (found == MAX_DEPTH && (u64)i < d) {
			struct frame *f = &st->f[i];
			if (f->kind == kind && (mm == 0 || f->mm == mm))
				found = i;
		}
	}
	if (found >= MAX_DEPTH)
		return 0;
	if (found + 1 < d)
		count_loss(CNT_FRAME_STALE, d - 1 - found);
	__builtin_memcpy(out, &st->f[frame_index(found)], sizeof(*out));
	st->depth = found;
	return 1;
}

/* The innermost frame (peek), or 0 */
static __always_inline struct frame *top(struct thread_frames *st)
{
	u64 d = st->depth;
	if (d == 0 || d > MAX_DEPTH)
		return 0;
	return &st->f[frame_index(d - 1)];
}

/* ---- handlers -------------------------------------------------------------------------- */
static __always_inline int sync_view(void *ctx, const struct vma_view *v);

/* mmap_region(file, addr, len, vm_flags, pgoff[, uf]): vm_flags is final but for VM_ACCOUNT
 * and VM_SOFTDIRTY, which never carry the tracked bits' meaning. */
static __always_inline int on_mmap_enter(u64 addr, u64 len, u64 flags)
{
	if (!(flags & TRACK_MASK))
		return 0;
	push(FR_MMAP, current_mm(), addr, addr + len, flags, 0, 0);
	return 0;
}

static __always_inline int on_mmap_exit(void *ctx, u64 ret)
{
	struct frame f = {};
	if (!pop(FR_MMAP, MM_CURRENT, &f) || is_err(ret))
		return 0;
	u64 len = f.end - f.start;
	emit(ctx, EV_MAP, f.mm, ret, ret + len, f.flags, f.ext_start, f.ext_end, 0, 0);
	return 0;
}

/* Called with the VMA a new mapping ended up in, merged or not (perf_event_mmap() at the end of
 * mmap_region on every kernel): the only view of merges done by notrace code such as
 * vma_expand() on 6.1 (added by 4dd1b84140c1 "mm/mmap: use advanced maple tree API for
 * mmap_region()").  The wrappers read the VMA only when it carries the flag (the common
 * case, an unflagged VMA, costs one read: a new mapping without the flag pushed no frame, and
 * growth without it is not ours). */
static __always_inline int on_final_vma(void *ctx, const struct vma_view *v)
{
	u64 id = bpf_get_current_pid_tgid();
	struct thread_frames *st = frames_of(id, 0);
	struct frame *f = st ? top(st) : 0;
	if (f && f->kind == FR_MERGE && st->depth >= 2 && st->f[frame_index(st->depth - 2)].kind == FR_MMAP) {
		/* perf_event_mmap() never runs inside a merge: that merge's return was not seen */
		count_loss(CNT_FRAME_STALE, 1);
		st->depth -= 1;
		f = top(st);
	}
	if (f && f->kind == FR_MMAP) {
		if (v->mm == f->mm && v->start <= f->start && f->end <= v->end) {
			f->ext_start = v->start;
			f->ext_end = v->end;
		}
		return 0;
	}
	/* Outside mmap_region the same call reports a VMA that grew in place: brk
	 * (do_brk_flags) and stack growth (expand_downwards/expand_upwards), on every kernel.
	 * Its extent is final here: the kernel states it. */
	return sync_view(ctx, v);
}

/* vma_merge()'s frame when neither the new flags nor the memory in its range carry the flag:
 * its return reports nothing (the front end would have had nothing to release). */
#define MERGE_QUIET 1

/* The vm_flags the memory in [start, end) carries now, as far as vma_merge()'s `prev` tells,
 * else TRACK_MASK (assume flagged memory is involved).  Every caller changing an existing VMA
 * (mprotect_fixup, mlock_fixup, madvise, mbind, userfaultfd) passes a range inside one VMA and,
 * as prev, that VMA when the range starts inside it, else the VMA before the range.  Then the
 * VMA after prev (vm_next, up to 6.0: 763ecb035029 "mm: remove the vma linked list") holds the
 * range or lies beyond it (a new range: mmap, brk, mremap's target).  6.12+ name the VMA
 * itself (on_vmg_enter). */
static __always_inline u64 flags_in_range(u64 prev, u64 start, u64 end)
{
	if (!prev)
		return TRACK_MASK;
	u64 prev_end = read_u64(prev, OFF_VMA_END);
	if (prev_end > start)
		return prev_end >= end && read_u64(prev, OFF_VMA_START) <= start ? read_u64(prev, OFF_VMA_FLAGS)
										   : TRACK_MASK;
#ifdef OFF_VMA_NEXT
	u64 next = read_u64(prev, OFF_VMA_NEXT);
	if (!next)
		return 0;
	u64 next_start = read_u64(next, OFF_VMA_START);
	if (next_start >= end)
		return 0; /* no VMA in the range */
	if (next_start <= start && read_u64(next, OFF_VMA_END) >= end)
		return read_u64(next, OFF_VMA_FLAGS);
#endif
	return TRACK_MASK;
}

/* A merge attempt: [start, end) is about to carry `flags` (mprotect, mlock, madvise, mremap,
 * brk, mmap).  Followed only when the flag is involved: set now, or the address space has it.
 * A change in such an address space where neither the new flags nor the range carry the flag
 * (madvise on other memory: two thirds of the events under stress-ng on 6.1, field notes)
 * still pushes its frame, which tells a free inside the merge from an unmap, but is quiet. */
static __always_inline int on_merge_enter(u64 mm, u64 prev, u64 start, u64 end, u64 flags)
{
	u64 quiet = 0;
	if (!(flags & TRACK_MASK)) { /* the VMA is read only here: a flagged mapping pays nothing for it */
		if (!is_tracked(mm))
			return 0;
		quiet = (flags_in_range(prev, start, end) & TRACK_MASK) ? 0 : MERGE_QUIET;
	}
	push(FR_MERGE, mm, start, end, flags, quiet, 0);
	return 0;
}

static __always_inline int on_merge_exit(void *ctx, u64 ret)
{
	struct frame f = {};
	if (!pop(FR_MERGE, 0, &f))
		return 0;
	u64 ext_start = 0, ext_end = 0;
	if (!is_err(ret)) {
		struct vma_view v = {};
		read_vma(ret, &v);
		if (v.start <= f.start && f.end <= v.end) {
			ext_start = v.start;
			ext_end = v.end;
		}
	}
	/* Inside mmap_region or copy_vma the caller reports the result in its own event. */
	u64 id = bpf_get_current_pid_tgid();
	struct thread_frames *st = frames_of(id, 0);
	struct frame *outer = st ? top(st) : 0;
	/* ...whose new range is the merge's own (anything else is a frame left by a lost return) */
	if (outer && (outer->kind == FR_MMAP || outer->kind == FR_COPY) && outer->mm == f.mm &&
	    outer->start <= f.start && f.end <= outer->end) {
		if (ext_end) {
			outer->ext_start = ext_start;
			outer->ext_end = ext_end;
		}
		return 0;
	}
	if (f.aux == MERGE_QUIET)
		return 0;
	emit(ctx, EV_FLAGS, f.mm, f.start, f.end, f.flags, ext_start, ext_end, 0, 0);
	return 0;
}

#ifdef HOOK_VMG
/* 6.12+: vma_merge_new_range(vmg) / vma_modify(vmg) take a struct vma_merge_struct, declared
 * in mm/vma.h (not in the headers package): fields are read at BTF offsets (2f1c6611b0a8
 * "mm: introduce vma_merge_struct and abstract vma_merge(),vma_modify()", cacded5e42b9
 * "mm: avoid using vma_merge() for new VMAs").  It names the VMA being changed (vmg->vma,
 * vmg->middle on later kernels; none for a new range), so a change where neither that VMA
 * nor the new flags carry the flag is dropped here: a neighbour merges only when its flags
 * equal the new ones, so no flagged memory is involved. */
static __always_inline int on_vmg(u64 mm, u64 start, u64 end, u64 flags, u64 old_flags)
{
	if (!((flags | old_flags) & TRACK_MASK))
		return 0;
	push(FR_MERGE, mm, start, end, flags, 0, 0);
	return 0;
}

/* kprobe: the new flags first, the changed VMA's only when they lack the flag, the range last */
static __always_inline int on_vmg_enter(u64 vmg)
{
	u64 flags = read_u64(vmg, OFF_VMG_FLAGS), old_flags = 0;
	if (!(flags & TRACK_MASK)) {
		u64 vma = read_u64(vmg, OFF_VMG_VMA);
		old_flags = vma ? read_u64(vma, OFF_VMA_FLAGS) : 0;
		if (!(old_flags & TRACK_MASK))
			return 0;
	}
	return on_vmg(read_u64(vmg, OFF_VMG_MM), read_u64(vmg, OFF_VMG_START), read_u64(vmg, OFF_VMG_END),
		      flags, old_flags);
}
#endif

/* __split_vma(.., vma, addr, new_below): a boundary appears at addr (a flagged VMA only). */
static __always_inline int on_split(void *ctx, const struct vma_view *v, u64 addr)
{
	emit(ctx, EV_SPLIT, v->mm, v->start, v->end, v->flags, 0, 0, addr, 0);
	return 0;
}

/* copy_vma(&vma, addr, len, pgoff, ..): mremap moving a VMA to [addr, addr+len). */
/* copy_vma(&vma, addr, len, pgoff, ..): mremap moving (part of) a VMA to [addr, addr+len).
 * The moved bytes are min(len, old_len) from the source offset: the target may be longer
 * (growth) and the source VMA may extend past the range mremap() was given. */
static __always_inline int on_copy_enter(u64 vmap, u64 addr, u64 len, u64 pgoff)
{
	u64 vma = 0;
	bpf_probe_read(&vma, sizeof(vma), (void *)vmap);
	struct vma_view v = {};
	read_vma(vma, &v);
	if (!(v.flags & TRACK_MASK))
		return 0;
	u64 vm_pgoff = read_u64(vma, OFF_VMA_PGOFF);
	u64 old_start = v.start + ((pgoff - vm_pgoff) << PAGE_SHIFT_);
	u64 moved = len, mode = 0;
	u64 id = bpf_get_current_pid_tgid();
	struct mremap_call *call = mremaps.lookup(&id);
	if (call) {
		if (call->old_len < moved)
			moved = call->old_len;
		if (call->flags & MREMAP_DONTUNMAP_)
			mode = EVCTX_DONTUNMAP;
	}
	if (v.end - old_start < moved)
		moved = v.end - old_start;
	struct frame *f = push(FR_COPY, v.mm, addr, addr + len, v.flags, old_start, old_start + moved);
	if (f) {
		f->ctx = mode;
		f->ptr = vmap;
	}
	return 0;
}

static __always_inline int on_copy_exit(void *ctx, u64 ret)
{
	struct frame f = {};
	if (!pop(FR_COPY, MM_CURRENT, &f) || is_err(ret))
		return 0;
	u64 mode = f.ctx, vmap = f.ptr;
	u64 ext_start = f.ext_start, ext_end = f.ext_end;
	if (!ext_end) {
		struct vma_view v = {};
		read_vma(ret, &v);
		ext_start = v.start;
		ext_end = v.end;
	}
	emit_ctx(ctx, EV_MOVE, f.mm, f.start, f.end, f.flags, ext_start, ext_end, f.aux, f.aux2, mode);
	if (mode && vmap) {
		/* MREMAP_DONTUNMAP leaves the source VMA mapped, and move_vma() then clears
		 * VM_LOCKED|VM_LOCKONFAULT and VM_ACCOUNT on all of it (not only the moved range). */
		u64 src = 0;
		bpf_probe_read(&src, sizeof(src), (void *)vmap);
		struct vma_view v = {};
		read_vma(src, &v);
		if (v.end > v.start)
			emit(ctx, EV_FLAGS, v.mm, v.start, v.end, v.flags & ~(VM_LOCKED_MASK_ | VM_ACCOUNT_),
			     v.start, v.end, 0, 0);
	}
	return 0;
}

/* Stack growth, expand_downwards(vma, address): where perf_event_mmap() cannot be probed
 * (Debian 5.10 builds it notrace), the VMA's new extent is read when the call returns. */
static __always_inline int sync_view(void *ctx, const struct vma_view *v)
{
	if ((v->flags & TRACK_MASK) && v->end > v->start)
		emit(ctx, EV_SYNC, v->mm, v->start, v->end, v->flags, v->start, v->end, 0, 0);
	return 0;
}

static __always_inline int sync_vma(void *ctx, u64 vma)
{
	struct vma_view v = {};
	read_vma(vma, &v);
	return sync_view(ctx, &v);
}

static __always_inline int on_grow_enter(u64 vma)
{
	if (!(read_u64(vma, OFF_VMA_FLAGS) & TRACK_MASK))
		return 0;
	struct frame *f = push(FR_GROW, current_mm(), 0, 0, 0, 0, 0);
	if (f)
		f->ptr = vma;
	return 0;
}

static __always_inline int on_grow_exit(void *ctx)
{
	struct frame f = {};
	if (!pop(FR_GROW, MM_CURRENT, &f))
		return 0;
	return sync_vma(ctx, f.ptr);
}

/* mremap() syscall entry and exit (tracepoints: stable on every kernel).  Entry stashes the
 * call for copy_vma; exit reports growth in place, which no single kernel function shows on
 * every version: vma_adjust() up to 6.0, vma_merge() from 6.1 (ca3d76b0aa80 "mm: add merging
 * after mremap resize"), vma_merge_extend() from 6.7 ("mm: abstract VMA merge and extend into
 * vma_merge_extend() helper"; hash not confirmed here). */
static __always_inline int on_mremap_enter(u64 addr, u64 old_len, u64 new_len, u64 flags)
{
	u64 mm = current_mm();
	if (!is_tracked(mm))
		return 0; /* no flagged memory in this address space: nothing to move or grow */
	u64 id = bpf_get_current_pid_tgid();
	struct mremap_call call = {.mm = mm, .addr = addr, .old_len = old_len, .new_len = new_len,
				   .flags = flags};
	if (mremaps.update(&id, &call) != 0)
		count_loss(CNT_MAP_FULL, 1);
	return 0;
}

static __always_inline int on_mremap_exit(void *ctx, u64 ret)
{
	u64 id = bpf_get_current_pid_tgid();
	struct mremap_call *stashed = mremaps.lookup(&id);
	if (!stashed)
		return 0;
	struct mremap_call call = *stashed;
	mremaps.delete(&id);
	u64 old_len = (call.old_len + PAGE_SIZE_ - 1) & ~(PAGE_SIZE_ - 1);
	u64 new_len = (call.new_len + PAGE_SIZE_ - 1) & ~(PAGE_SIZE_ - 1);
	if (is_err(ret) || ret != call.addr || new_len <= old_len)
		return 0;
	emit(ctx, EV_GROW, call.mm, call.addr + old_len, call.addr + new_len, 0, 0, 0, call.addr, 0);
	return 0;
}

/* vm_area_free(vma): every VMA ends here.  Freed by a merge, its range lives on in a
 * neighbour; freed otherwise (munmap, MAP_FIXED, mremap source, exit, exec) it is gone.
 * The common case, an unflagged VMA, costs the wrappers one read and no map lookup. */
static __always_inline int free_wanted(u64 flags)
{
	return (flags & TRACK_MASK) || (TRACK_MASK & CLEARED_BEFORE_FREE);
}

static __always_inline int on_free(void *ctx, const struct vma_view *vv)
{
	struct vma_view v = *vv;
	if (v.end <= v.start)
		return 0;
	/* VM_LOCKED can be gone by now although the memory carried it: 5.10's munmap clears it
	 * (munlock_vma_pages_all, until a213e5cf71cb "mm/munlock: delete munlock_vma_pages_all(),
	 * allow oomreap") before the VMA is freed.  When tracing it there, every free in
	 * an address space holding flagged memory is reported, except during teardown, where
	 * MM_EXIT releases everything at once.  Other flags and kernels pay nothing for this, and
	 * there a free elsewhere costs one lookup (the address space) before the thread's frames. */
	int flagged = (v.flags & TRACK_MASK) != 0;
	if (!flagged && (!(TRACK_MASK & CLEARED_BEFORE_FREE) || !is_tracked(v.mm)))
		return 0;
	u64 id = bpf_get_current_pid_tgid();
	struct thread_frames *st = frames_of(id, 0);
	struct frame *f = st ? top(st) : 0;
	if (!flagged && f && f->kind == FR_EXIT)
		return 0;
	if (f && f->mm == v.mm) {
		/* a merge frees the neighbours it absorbs: they touch its range (a frame whose range
		 * this VMA does not touch was left by a lost return, and the free is a real one) */
		if ((f->kind == FR_MERGE || f->kind == FR_COPY) && v.end >= f->start && v.start <= f->end)
			return 0;
		/* in mmap_region: inside the new range it is MAP_FIXED replacing memory; next to it, a merge */
		if (f->kind == FR_MMAP && (v.end == f->start || v.start == f->end))
			return 0;
	}
	emit(ctx, EV_UNMAP, v.mm, v.start, v.end, v.flags, 0, 0, 0, 0);
	return 0;
}

static __always_inline int on_exit_mmap_enter(u64 mm)
{
	push(FR_EXIT, mm, 0, 0, 0, 0, 0);
	return 0;
}

static __always_inline int on_exit_mmap_exit(void *ctx)
{
	struct frame f = {};
	if (!pop(FR_EXIT, 0, &f))
		return 0;
	if (!is_tracked(f.mm))
		return 0;
	emit(ctx, EV_MM_EXIT, f.mm, 0, 0, 0, 0, 0, 0, 0);
	tracked.delete(&f.mm);
	return 0;
}

/* fork: dup_mmap() runs in the parent and hands every copied VMA to dup_userfaultfd(child_vma, ..)
 * (anon_vma_fork() where userfaultfd is compiled out, which misses VM_WIPEONFORK copies). */
/* dup_mmap() clears VM_LOCKED|VM_LOCKONFAULT on the child's copy right after this call */
#define FORK_KEEPS(flags) ((flags) & ~VM_LOCKED_MASK_ & TRACK_MASK)

static __always_inline int on_fork_vma(void *ctx, const struct vma_view *v)
{
	emit(ctx, EV_FORK, v->mm, v->start, v->end, v->flags & ~VM_LOCKED_MASK_, 0, 0, current_mm(), 0);
	return 0;
}

/* wake_up_new_task(p): names the process behind a forked address space we follow. */
static __always_inline int on_new_task(void *ctx, u64 task)
{
	u32 pid = read_u32(task, OFF_TASK_PID), tgid = read_u32(task, OFF_TASK_TGID);
	if (pid != tgid)
		return 0; /* a new thread: same process, same mm */
#ifdef PID_FILTER
	/* -p follows the children of the processes it was given */
	u32 parent = bpf_get_current_pid_tgid() >> 32;
	if (pids.lookup(&parent)) {
		u8 one = 1;
		pids.update(&tgid, &one);
	}
#endif
	u64 mm = read_u64(task, OFF_TASK_MM);
	/* vfork/CLONE_VM children run in their parent's address space: it stays the parent's */
	if (!mm || mm == current_mm() || !is_tracked(mm))
		return 0;
	/* not emit(): the event names the new task, not the current one */
	struct mpxtrace_event e = {
		.ts_ns = bpf_ktime_get_ns(),
		.mm = mm,
		.tgid = tgid,
		.tid = pid,
		.kind = EV_TASK,
	};
	bpf_probe_read(&e.comm, sizeof(e.comm), (void *)(task + OFF_TASK_COMM));
	submit(ctx, &e);
	return 0;
}

/* task_statm(mm, ...) runs when anyone reads /proc/PID/statm.  When we read it while seeding
 * from smaps, it tells us that process's mm, and from then on its address space is followed
 * in the kernel like one whose flagged memory we saw being created. */
static __always_inline int on_task_statm(u64 mm)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (tgid != TRACER_TGID || !mm)
		return 0;
	int zero = 0;
	seed_mm.update(&zero, &mm);
	u8 one = 1;
	tracked.update(&mm, &one);
	return 0;
}

/* ---- attachment: syscall tracepoints (attached by BCC when compiled in) ----------- */
#ifdef HOOK_MREMAP_TP
TRACEPOINT_PROBE(syscalls, sys_enter_mremap)
{
	return on_mremap_enter(args->addr, args->old_len, args->new_len, args->flags);
}

TRACEPOINT_PROBE(syscalls, sys_exit_mremap)
{
	return on_mremap_exit(args, (u64)args->ret);
}
#endif

#ifdef KPROBE_HOOK_mremap_syscall
/* The same by kprobes on __x64_sys_mremap(regs), where the kernel preempts in kernel mode: the
 * tracepoints' programs run preemptible there and were skipped under load (7.2 in the lab:
 * bench/skip_sources.py); a kprobe program runs with preemption off.  The x86-64 syscall ABI
 * passes the arguments in di, si, dx, r10. */
int kp_mremap(struct pt_regs *ctx)
{
	struct pt_regs regs = {};
	bpf_probe_read(&regs, sizeof(regs), (void *)PT_REGS_PARM1(ctx));
	return on_mremap_enter(regs.di, regs.si, regs.dx, regs.r10);
}

int kr_mremap(struct pt_regs *ctx) { return on_mremap_exit(ctx, PT_REGS_RC(ctx)); }
#endif

/* ---- attachment: kprobe wrappers (attached by name from Python) -------------------------
 * Each is compiled only where its hook attaches by kprobe (KPROBE_HOOK_<hook>, from the
 * planner), as fentry programs are only where they attach: clang compiles whatever it is
 * given, and on an fentry kernel a dozen unused wrappers, each inlining its handler, were
 * compile time for nothing at every start. */
#define KARG_(n) PT_REGS_PARM##n(ctx)
#define KARG(n) KARG_(n)
/* VMA hooks read the flags first and the rest only for a VMA that matters: by probe reads
 * here (kprobes), by typed BTF loads in FE_VMA (fentry) */
#define VMA_IF_WANTED(load_u64, load_vma, vma, v, wanted)   \
	struct vma_view v = {};                               \
	v.flags = load_u64(vma, OFF_VMA_FLAGS);               \
	if (!(wanted))                                        \
		return 0;                                     \
	load_vma(vma, &v)
#define KP_VMA(vma, v, wanted) VMA_IF_WANTED(read_u64, read_vma, vma, v, wanted)

#ifdef KPROBE_HOOK_mmap
int kp_mmap_region(struct pt_regs *ctx)
{
	return on_mmap_enter(KARG(ARG_MMAP_ADDR), KARG(ARG_MMAP_LEN), KARG(ARG_MMAP_FLAGS));
}
int kr_mmap_region(struct pt_regs *ctx) { return on_mmap_exit(ctx, PT_REGS_RC(ctx)); }
#endif
#ifdef KPROBE_HOOK_final_vma
int kp_final_vma(struct pt_regs *ctx)
{
	KP_VMA(KARG(ARG_FINAL_VMA), v, v.flags & TRACK_MASK);
	return on_final_vma(ctx, &v);
}
#endif
#ifdef KPROBE_HOOK_merge
int kp_vma_merge(struct pt_regs *ctx)
{
	return on_merge_enter(KARG(ARG_MERGE_MM),
		KARG(ARG_MERGE_PREV),
		KARG(ARG_MERGE_START),
		KARG(ARG_MERGE_END),
		KARG(ARG_MERGE_FLAGS));
}
#endif
#ifdef KPROBE_HOOK_vmg
int kp_vmg(struct pt_regs *ctx) { return on_vmg_enter(KARG(1)); }
#endif
#if defined(KPROBE_HOOK_merge) || defined(KPROBE_HOOK_vmg)
int kr_merge(struct pt_regs *ctx) { return on_merge_exit(ctx, PT_REGS_RC(ctx)); }
#endif
#ifdef KPROBE_HOOK_split
int kp_split(struct pt_regs *ctx)
{
	KP_VMA(KARG(ARG_SPLIT_VMA), v, v.flags & TRACK_MASK);
	return on_split(ctx, &v, KARG(ARG_SPLIT_ADDR));
}
#endif
#ifdef KPROBE_HOOK_copy
int kp_copy_vma(struct pt_regs *ctx)
{
	return on_copy_enter(KARG(ARG_COPY_VMAP),
		KARG(ARG_COPY_ADDR),
		KARG(ARG_COPY_LEN),
		KARG(ARG_COPY_PGOFF));
}
int kr_copy_vma(struct pt_regs *ctx) { return on_copy_exit(ctx, PT_REGS_RC(ctx)); }
#endif
#ifdef KPROBE_HOOK_free
int kp_free(struct pt_regs *ctx)
{
	KP_VMA(KARG(1), v, free_wanted(v.flags));
	return on_free(ctx, &v);
}
#endif
#ifdef KPROBE_HOOK_exit
int kp_exit_mmap(struct pt_regs *ctx) { return on_exit_mmap_enter(KARG(1)); }
int kr_exit_mmap(struct pt_regs *ctx) { return on_exit_mmap_exit(ctx); }
#endif
#ifdef KPROBE_HOOK_fork
int kp_fork_vma(struct pt_regs *ctx)
{
	KP_VMA(KARG(ARG_FORK_VMA), v, FORK_KEEPS(v.flags));
	return on_fork_vma(ctx, &v);
}
#endif
#ifdef KPROBE_HOOK_grow
int kp_grow(struct pt_regs *ctx) { return on_grow_enter(KARG(ARG_GROW_VMA)); }
int kr_grow(struct pt_regs *ctx) { return on_grow_exit(ctx); }
#endif
#ifdef KPROBE_HOOK_new_task
int kp_new_task(struct pt_regs *ctx) { return on_new_task(ctx, KARG(1)); }
#endif
#ifdef KPROBE_HOOK_seed
int kp_seed_mm(struct pt_regs *ctx) { return on_task_statm(KARG(ARG_SEED_MM)); }
#endif

/* ---- attachment: fentry/fexit (compiled only for the functions chosen to use them) ------
 * Arguments are declared u64 from BTF's count; fields are read at offsets, never through
 * the declared types, so one wrapper fits every signature. */
#define FA1 u64 a1
#define FA2 FA1, u64 a2
#define FA3 FA2, u64 a3
#define FA4 FA3, u64 a4
#define FA5 FA4, u64 a5
#define FA6 FA5, u64 a6
#define FARGS_(n) FA##n
#define FARGS(n) FARGS_(n)
#define FARG_(n) a##n
#define FARG(n) FARG_(n)
#define FE_VMA(vma, v, wanted) VMA_IF_WANTED(BTF_U64, BTF_VMA, vma, v, wanted)
/* the fentry counterpart of on_vmg_enter, by typed loads */
#define FE_VMG(vmg)                                                                       \
	on_vmg(BTF_U64(vmg, OFF_VMG_MM), BTF_U64(vmg, OFF_VMG_START), BTF_U64(vmg, OFF_VMG_END), \
	       BTF_U64(vmg, OFF_VMG_FLAGS),                                                \
	       BTF_U64(vmg, OFF_VMG_VMA) ? BTF_U64(BTF_U64(vmg, OFF_VMG_VMA), OFF_VMA_FLAGS) : 0)

#ifdef FENTRY_mmap_region
KFUNC_PROBE(mmap_region, FARGS(NARGS_mmap_region))
{
	return on_mmap_enter(FARG(ARG_MMAP_ADDR), FARG(ARG_MMAP_LEN), FARG(ARG_MMAP_FLAGS));
}
KRETFUNC_PROBE(mmap_region, FARGS(NARGS_mmap_region), long ret)
{
	/* fexit sees the arguments: an unflagged mapping pushed no frame, so skip the lookup */
	if (!(FARG(ARG_MMAP_FLAGS) & TRACK_MASK))
		return 0;
	return on_mmap_exit(ctx, (u64)ret);
}
#endif
#ifdef FENTRY_perf_event_mmap
KFUNC_PROBE(perf_event_mmap, FARGS(NARGS_perf_event_mmap))
{
	FE_VMA(FARG(ARG_FINAL_VMA), v, v.flags & TRACK_MASK);
	return on_final_vma(ctx, &v);
}
#endif
#ifdef FENTRY_vma_merge_new_range
/* A new range (mmap, brk, mremap target; every mmap on 6.12+ tries one): no existing VMA
 * changes flags (the kernel warns when vmg->vma is set), so vmg->flags alone decides, on entry
 * and again on return, where an unflagged range then costs no map lookup. */
KFUNC_PROBE(vma_merge_new_range, FARGS(NARGS_vma_merge_new_range))
{
	return on_vmg(BTF_U64(a1, OFF_VMG_MM), BTF_U64(a1, OFF_VMG_START), BTF_U64(a1, OFF_VMG_END),
		      BTF_U64(a1, OFF_VMG_FLAGS), 0);
}
KRETFUNC_PROBE(vma_merge_new_range, FARGS(NARGS_vma_merge_new_range), long ret)
{
	if (!(BTF_U64(a1, OFF_VMG_FLAGS) & TRACK_MASK))
		return 0;
	return on_merge_exit(ctx, (u64)ret);
}
#endif
#ifdef FENTRY_vma_modify
KFUNC_PROBE(vma_modify, FARGS(NARGS_vma_modify)) { return FE_VMG(a1); }
KRETFUNC_PROBE(vma_modify, FARGS(NARGS_vma_modify), long ret)
{
	return on_merge_exit(ctx, (u64)ret);
}
#endif
#ifdef FENTRY___split_vma
KFUNC_PROBE(__split_vma, FARGS(NARGS___split_vma))
{
	FE_VMA(FARG(ARG_SPLIT_VMA), v, v.flags & TRACK_MASK);
	return on_split(ctx, &v, FARG(ARG_SPLIT_ADDR));
}
#endif
#ifdef FENTRY_split_vma
KFUNC_PROBE(split_vma, FARGS(NARGS_split_vma))
{
	FE_VMA(FARG(ARG_SPLIT_VMA), v, v.flags & TRACK_MASK);
	return on_split(ctx, &v, FARG(ARG_SPLIT_ADDR));
}
#endif
#ifdef FENTRY_copy_vma
KFUNC_PROBE(copy_vma, FARGS(NARGS_copy_vma))
{
	return on_copy_enter(FARG(ARG_COPY_VMAP),
		FARG(ARG_COPY_ADDR),
		FARG(ARG_COPY_LEN),
		FARG(ARG_COPY_PGOFF));
}
KRETFUNC_PROBE(copy_vma, FARGS(NARGS_copy_vma), long ret) { return on_copy_exit(ctx, (u64)ret); }
#endif
#ifdef FENTRY_vm_area_free
KFUNC_PROBE(vm_area_free, FARGS(NARGS_vm_area_free))
{
	FE_VMA(a1, v, free_wanted(v.flags));
	return on_free(ctx, &v);
}
#endif
#ifdef FENTRY_exit_mmap
KFUNC_PROBE(exit_mmap, FARGS(NARGS_exit_mmap)) { return on_exit_mmap_enter(a1); }
KRETFUNC_PROBE(exit_mmap, FARGS(NARGS_exit_mmap)) /* void: no ret */
{
	return on_exit_mmap_exit(ctx);
}
#endif
#ifdef FENTRY_dup_userfaultfd
KFUNC_PROBE(dup_userfaultfd, FARGS(NARGS_dup_userfaultfd))
{
	FE_VMA(FARG(ARG_FORK_VMA), v, FORK_KEEPS(v.flags));
	return on_fork_vma(ctx, &v);
}
#endif
#ifdef FENTRY_anon_vma_fork
KFUNC_PROBE(anon_vma_fork, FARGS(NARGS_anon_vma_fork))
{
	FE_VMA(FARG(ARG_FORK_VMA), v, FORK_KEEPS(v.flags));
	return on_fork_vma(ctx, &v);
}
#endif
#ifdef FENTRY_task_statm
KFUNC_PROBE(task_statm, FARGS(NARGS_task_statm)) { return on_task_statm(FARG(ARG_SEED_MM)); }
#endif
#ifdef FENTRY_wake_up_new_task
KFUNC_PROBE(wake_up_new_task, FARGS(NARGS_wake_up_new_task)) { return on_new_task(ctx, a1); }
#endif
