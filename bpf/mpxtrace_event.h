/* SPDX-License-Identifier: GPL-2.0-only */
/* Event layout shared by the kernel program (mpxtrace.bpf.c) and the front end
 * (mpxtrace/events.py mirrors it with ctypes; tests/test_event_layout.py compiles this
 * header and checks both agree).  Fixed-width fields only, so the layout does not depend
 * on the compiler that builds either side. */
#ifndef MPXTRACE_EVENT_H
#define MPXTRACE_EVENT_H

#ifndef __u64
#include <linux/types.h>
#endif

#define MPXTRACE_COMM_LEN 16

/* What happened.  Ranges are [start, end) in the address space of `mm`. */
enum mpxtrace_kind {
	EV_MAP = 1,    /* mmap_region created [start,end) with vm_flags; ext = VMA it ended in */
	EV_FLAGS = 2,  /* [start,end) now carries vm_flags (mprotect/mlock/madvise...); ext if merged */
	EV_SPLIT = 3,  /* the VMA [start,end) was split at aux (decoded as `at`) */
	EV_UNMAP = 4,  /* the VMA [start,end) was destroyed (munmap, MAP_FIXED, exit, exec) */
	EV_MOVE = 5,   /* mremap: [aux, aux2) (`old_start`, `old_end`) moved to start (the new VMA is
			* [start,end)); ext = VMA at the target */
	EV_FORK = 6,   /* fork: child `mm` inherited [start,end); aux = parent mm (`parent_mm`) */
	EV_TASK = 7,   /* `mm` belongs to process tgid/comm (a new child) */
	EV_MM_EXIT = 8,/* exit_mmap(mm) finished: the address space is gone */
	EV_GROW = 9,   /* mremap grew the VMA ending at start in place: it now ends at end;
			* aux = where the range mremap() was given starts (`old_start`) */
	EV_SYNC = 10,  /* the kernel says one VMA spans exactly [start,end) with vm_flags now
			* (brk and stack growth: perf_event_mmap outside mmap_region) */
};

/* Bits of mpxtrace_event.ctx */
#define EVCTX_OWNER 1      /* the current task runs in `mm` (tgid/comm describe its owner) */
#define EVCTX_DONTUNMAP 2  /* EV_MOVE by mremap(MREMAP_DONTUNMAP): the source stays mapped */

struct mpxtrace_event {
	__u64 ts_ns;      /* bpf_ktime_get_ns(), CLOCK_MONOTONIC */
	__u64 mm;         /* struct mm_struct *: the address-space identity */
	__u64 start;
	__u64 end;
	__u64 vm_flags;
	__u64 ext_start;  /* resulting VMA extent, 0/0 when unknown */
	__u64 ext_end;
	__u64 aux;        /* per kind (above); named per kind by the decoder (records.EVENT_KINDS) */
	__u64 aux2;
	__u32 tgid;
	__u32 tid;
	__u32 kind;       /* enum mpxtrace_kind */
	__u32 ctx;        /* EVCTX_* */
	char comm[MPXTRACE_COMM_LEN];
};

/* Indexes of the `counters` array map */
enum mpxtrace_counter {
	CNT_LOST_SUBMIT = 0,   /* ring/perf buffer full: event dropped in the kernel */
	CNT_FRAME_OVERFLOW = 1,/* nesting deeper than MAX_DEPTH: the call's event is lost */
	CNT_FRAME_STALE = 2,   /* frames left by an entry whose return never came, unwound */
	CNT_MAP_FULL = 3,      /* a kernel map (frames, tracked, mremaps) had no room */
	CNT_MAX = 4,
};

/* Events the stream refused, counted by address space: slot = (mm * MPXTRACE_LOST_SPACE_HASH) >> 52
 * (Fibonacci hashing of the mm_struct pointer; mpxtrace/lostspaces.py mirrors it).  A slot's count
 * that did not change proves its address spaces lost nothing; two spaces sharing a slot only
 * make one look provisional when the other lost events. */
#define MPXTRACE_LOST_SPACE_SLOTS 4096
#define MPXTRACE_LOST_SPACE_SHIFT 52 /* 64 - log2(MPXTRACE_LOST_SPACE_SLOTS) */
#define MPXTRACE_LOST_SPACE_HASH 0x9E3779B97F4A7C15ULL

/* Indexes of the `tallies` array map: aggregates the kernel program keeps itself.  Counted in
 * submit(), before the stream buffer may refuse the event, so no stream loss touches them. */
#define MPXTRACE_TALLY_BUCKETS 64
enum mpxtrace_tally {
	TALLY_EMITTED = 0,      /* + kind (EV_*, 1..10): events of that kind handed to the stream */
	TALLY_MAP_BYTES = 16,   /* bytes of the EV_MAP events: flagged memory mmap_region() mapped */
	TALLY_UNMAP_BYTES = 17, /* bytes of the EV_UNMAP events: flagged VMAs destroyed */
	TALLY_MAP_LOG2 = 18,    /* + bucket: EV_MAP sizes; bucket k holds [2^(k-1), 2^k) bytes */
	TALLY_UNMAP_LOG2 = 82,  /* + bucket: EV_UNMAP sizes, the same buckets */
	TALLY_LIFETIME_NS = 146,  /* nanoseconds lived by the mappings destroyed as they were made */
	TALLY_LIFETIME_LOG2 = 147,/* + bucket: those lifetimes (EV_UNMAP ts - EV_MAP ts), ns */
	TALLY_MAX = 211,
};

#endif /* MPXTRACE_EVENT_H */
