"""Seeded random VMA lifecycles as an explicit, replayable list of operations.

Operations name memory by (space, page offset), never by address: an actor's arena ``A`` (a
PROT_NONE reservation whose pages are placeholders for MAP_FIXED), a far region ``F<id>``
placed by the kernel, or its brk extension ``B``.  So any sub-list of a generated list still
runs: an operation whose actor or memory is gone is skipped at run time.  That is what lets
a failing list be shrunk (mpxtrace.lab.campaign).

The generator keeps a rough model of each actor's pages (holes, placeholders, mappings with
their attributes) only to draw operations that mostly succeed; it never needs to be exact,
since the kernel decides and /proc/PID/smaps is the oracle.  It uses only
``random.Random.randrange``/``choice``/``random``, whose sequences are the same on Python
3.9 to 3.14, so a (seed, flag) pair gives the same list in every lab guest and on the host.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

__all__ = ["Op", "ARENA_PAGES", "ADVISED", "FLAGS", "COVERAGE", "generate", "ops_digest", "MEMORY_OPS"]

Op = Dict[str, Any]
ARENA_PAGES = 640
MAX_ACTORS = 5
# the flags a run can be about.  VM_NORESERVE and VM_LOCKED are set at creation (and by mlock);
# the others only by madvise() on memory that exists (a flag change: split, new flags, merge),
# and VM_DONTCOPY / VM_WIPEONFORK also decide what a child inherits at fork
ADVISED = {"VM_HUGEPAGE": "hugepage", "VM_DONTCOPY": "dontfork", "VM_WIPEONFORK": "wipeonfork",
           "VM_MERGEABLE": "mergeable"}
FLAGS = ("VM_NORESERVE", "VM_LOCKED") + tuple(ADVISED)
MEMORY_OPS = ("map", "mapfar", "unmap", "protect", "remap", "lock", "lockall", "unlockall", "advise", "touch",
              "brk", "grow", "recurse")
REMAP_MODES = ("inplace", "shrink", "maymove", "fixed", "dontunmap")
# every generated list holds each of these (drawn late if chance had not drawn it), so that a
# few seeds cover all of them
COVERAGE = ("map", "mapfar", "unmap", "protect", "lock/mlock", "lock/munlock", "lock/onfault", "lockall", "unlockall", "advise", "touch", "brk", "gd",
            "grow", "recurse", "threads", "fork", "spawn", "exec", "exit") + tuple(f"remap/{m}" for m in REMAP_MODES)

# A page of the model: None is a hole; otherwise (extent, prot, create, lock, advice).
# extent -1 is a placeholder; create holds "n" (MAP_NORESERVE) and "g" (MAP_GROWSDOWN);
# lock is "" | "L" (mlock, MAP_LOCKED) | "F" (mlock2 ONFAULT); advice is a sorted string of
# "d" (DONTFORK), "w" (WIPEONFORK), "h" (HUGEPAGE), "m" (MERGEABLE: drawn only for runs about VM_MERGEABLE).
Page = Optional[Tuple[int, str, str, str, str]]
PLACEHOLDER: Page = (-1, "none", "", "", "")


@dataclass
class _Actor:
    ident: int
    threads: int
    spaces: Dict[str, List[Page]] = field(default_factory=dict)
    brk: int = 0
    def_lock: str = ""

    @staticmethod
    def fresh(ident: int, threads: int) -> "_Actor":
        return _Actor(ident, threads, {"A": [PLACEHOLDER] * ARENA_PAGES})


@dataclass
class _Run:
    space: str
    start: int
    end: int
    page: Page

    @property
    def pages(self) -> int:
        return self.end - self.start


class _Generator:
    def __init__(self, seed: int, flag: str, count: int) -> None:
        if flag not in FLAGS:
            raise ValueError(f"flag must be one of {', '.join(FLAGS)}, not {flag!r}")
        self.rng = random.Random(f"mpxtrace-randomwork-v1:{seed}:{flag}")
        self.flag = flag
        self.count = count
        self.actors: Dict[int, _Actor] = {}
        self.next_actor = 0
        self.next_far = 0
        self.next_extent = 0
        self.ops: List[Op] = []
        self.covered: Set[str] = set()
        locked, advised = flag == "VM_LOCKED", flag in ADVISED
        self.weights: List[Tuple[str, float]] = [
            ("map", 14), ("mapfar", 4), ("unmap", 8), ("protect", 7), ("remap", 13),
            ("lock", 9 if locked else 5), ("lockall", 2.5 if locked else 1.2), ("unlockall", 1.5 if locked else 1),
            ("advise", 14 if advised else 5), ("touch", 4), ("brk", 4 if locked else 2), ("gd", 2), ("grow", 3),
            ("recurse", 1.5), ("threads", 1.5), ("fork", 3 if advised else 1.5), ("spawn", 1.2), ("exec", 0.6),
            ("exit", 0.9),
        ]

    # -- helpers ------------------------------------------------------------------------------
    def _pick(self, items: Sequence[Any]) -> Any:
        return items[self.rng.randrange(len(items))]

    def _chance(self, p: float) -> bool:
        return self.rng.random() < p

    def _weighted(self, weights: Sequence[Tuple[str, float]]) -> str:
        total = sum(w for _, w in weights)
        x = self.rng.random() * total
        for name, w in weights:
            x -= w
            if x < 0:
                return name
        return weights[-1][0]

    def _extent(self) -> int:
        self.next_extent += 1
        return self.next_extent

    def _runs(self, actor: _Actor, spaces: Optional[Sequence[str]] = None) -> List[_Run]:
        """Maximal runs of identical mapped pages: each lies inside one kernel VMA."""
        runs: List[_Run] = []
        for name, pages in actor.spaces.items():
            if spaces is not None and name not in spaces:
                continue
            start = 0
            for i in range(1, len(pages) + 1):
                if i == len(pages) or pages[i] != pages[start]:
                    page = pages[start]
                    if page is not None and page[0] >= 0:
                        runs.append(_Run(name, start, i, page))
                    start = i
        return runs

    def _sub(self, run: _Run, tail: bool = False) -> Tuple[int, int]:
        """A sub-range of a run: whole, head, tail or middle (tail-aligned when tail)."""
        n = run.pages
        shape = self._pick(("whole", "tail", "tail") if tail else ("whole", "head", "tail", "middle"))
        if shape == "whole" or n == 1:
            return run.start, n
        k = 1 + self.rng.randrange(n - 1)
        if shape == "head":
            return run.start, k
        if shape == "tail":
            return run.end - k, k
        lo = run.start + self.rng.randrange(n - k + 1)
        return lo, k

    def _create_flags(self) -> Tuple[str, str]:
        """(create, lock) for a new mapping: the traced flag more often than not."""
        if self.flag == "VM_NORESERVE":
            create = "n" if self._chance(0.6) else ""
            lock = "L" if self._chance(0.08) else ""
        elif self.flag == "VM_LOCKED":
            create = "n" if self._chance(0.15) else ""
            lock = "L" if self._chance(0.4) else ""
        else:  # a flag madvise() sets: creation only varies what it lands on (and what can merge)
            create = "n" if self._chance(0.3) else ""
            lock = "L" if self._chance(0.1) else ""
        return create, lock

    def _mf(self, create: str, lock: str) -> str:
        return create + ("l" if lock else "") + ("p" if self._chance(0.15) else "")

    def _set(self, actor: _Actor, space: str, off: int, n: int, page: Page) -> None:
        pages = actor.spaces.get(space)
        if pages is None:
            return
        for i in range(max(0, off), min(len(pages), off + n)):
            pages[i] = page

    def _modify(self, actor: _Actor, space: str, off: int, n: int, **change: str) -> None:
        pages = actor.spaces.get(space)
        if pages is None:
            return
        for i in range(max(0, off), min(len(pages), off + n)):
            page = pages[i]
            if page is None or (page[0] < 0 and "lock" not in change):
                continue
            extent, prot, create, lock, advice = page
            pages[i] = (extent, change.get("prot", prot), change.get("create", create), change.get("lock", lock),
                        change.get("advice", advice))

    def _thread(self, actor: _Actor) -> int:
        return self.rng.randrange(actor.threads + 1)

    def _base(self, actor: _Actor, kind: str) -> Op:
        return {"op": kind, "a": actor.ident, "t": self._thread(actor)}

    # -- operations ---------------------------------------------------------------------------
    def _op_map(self, actor: _Actor) -> List[Op]:
        runs = self._runs(actor, ["A"])
        n = 1 + self.rng.randrange(24)
        style = self._pick(("adjacent", "adjacent", "random", "over"))
        if style == "adjacent" and runs:
            run = self._pick(runs)
            off = run.end if self._chance(0.6) else run.start - n
        elif style == "over" and runs:
            run = self._pick(runs)
            off = run.start + self.rng.randrange(run.pages) - self.rng.randrange(n)
        else:
            off = self.rng.randrange(ARENA_PAGES - n)
        off = max(0, min(off, ARENA_PAGES - n))
        create, lock = self._create_flags()
        prot = self._pick(("rw", "rw", "rw", "rw", "rw", "rw", "r", "none"))
        op = dict(self._base(actor, "map"), sp="A", off=off, n=n, prot=prot, mf=self._mf(create, lock))
        lock = lock or actor.def_lock
        self._set(actor, "A", off, n, (self._extent(), prot, create, lock, ""))
        return [op]

    def _op_mapfar(self, actor: _Actor) -> List[Op]:
        n = 1 + self.rng.randrange(32)
        create, lock = self._create_flags()
        self.next_far += 1
        far = self.next_far
        op = dict(self._base(actor, "mapfar"), id=far, n=n, prot="rw", mf=self._mf(create, lock))
        actor.spaces[f"F{far}"] = [(self._extent(), "rw", create, lock or actor.def_lock, "")] * n
        return [op]

    def _op_unmap(self, actor: _Actor) -> List[Op]:
        runs = self._runs(actor)
        if not runs:
            return []
        run = self._pick(runs)
        if run.space == "A" and self._chance(0.2):  # make room after a mapping (for growth in place)
            off, n = run.end, 1 + self.rng.randrange(8)
            if off + n > ARENA_PAGES or any(p != PLACEHOLDER for p in actor.spaces["A"][off:off + n]):
                return []
        else:
            off, n = self._sub(run)
        self._set(actor, run.space, off, n, None)
        return [dict(self._base(actor, "unmap"), sp=run.space, off=off, n=n)]

    def _op_protect(self, actor: _Actor) -> List[Op]:
        runs = self._runs(actor)
        if not runs:
            return []
        run = self._pick(runs)
        off, n = self._sub(run)
        prot = self._pick(("rw", "rw", "r", "none")) if run.page and run.page[1] != "rw" else self._pick(("r", "none"))
        self._modify(actor, run.space, off, n, prot=prot)
        return [dict(self._base(actor, "protect"), sp=run.space, off=off, n=n, prot=prot)]

    def _holes_after(self, actor: _Actor, run: _Run, k: int) -> bool:
        pages = actor.spaces[run.space]
        return run.end + k <= len(pages) and all(p is None for p in pages[run.end:run.end + k])

    def _op_remap(self, actor: _Actor, mode: Optional[str] = None) -> List[Op]:
        runs = self._runs(actor)
        if not runs:
            return []
        run = self._pick(runs)
        if mode is None:
            mode = self._pick(("inplace", "inplace", "shrink", "maymove", "fixed", "fixed", "fixed", "dontunmap"))
        ops: List[Op] = []
        base = self._base(actor, "remap")
        if mode == "inplace":
            roomy = [r for r in runs if r.space == "A" and r.end < ARENA_PAGES
                     and actor.spaces["A"][r.end] in (None, PLACEHOLDER)]
            if roomy and self._chance(0.85):
                run = self._pick(roomy)
            off, n = self._sub(run, tail=True)
            k = 1 + self.rng.randrange(8)
            if run.space == "A" and not self._holes_after(actor, run, k) and self._chance(0.7):
                pages = actor.spaces["A"][run.end:run.end + k]
                if len(pages) == k and all(p == PLACEHOLDER or p is None for p in pages):
                    ops.append(dict(self._base(actor, "unmap"), sp="A", off=run.end, n=k))
                    self._set(actor, "A", run.end, k, None)
            if run.space == "A" and self._holes_after(actor, run, k):
                self._set(actor, "A", run.end, k, run.page)
            ops.append(dict(base, sp=run.space, off=off, n=n, new=n + k, mode="inplace"))
            return ops
        if mode == "shrink":
            off, n = self._sub(run)
            if n < 2:
                return []
            new = 1 + self.rng.randrange(n - 1)
            self._set(actor, run.space, off + new, n - new, None)
            return [dict(base, sp=run.space, off=off, n=n, new=new, mode="shrink")]
        off, n = self._sub(run)
        page = run.page
        if mode == "maymove":
            new = n + self.rng.randrange(9)
            self.next_far += 1
            if run.space == "A" and off + n == run.end and self._holes_after(actor, run, new - n):
                self._set(actor, "A", off + n, new - n, page)
                actor.spaces[f"F{self.next_far}"] = []
            else:
                self._set(actor, run.space, off, n, None)
                actor.spaces[f"F{self.next_far}"] = [page] * new
            return [dict(base, sp=run.space, off=off, n=n, new=new, mode="maymove", id=self.next_far)]
        dontunmap = mode == "dontunmap"
        new = n if dontunmap else max(1, n + self.rng.randrange(9) - 3)
        if dontunmap and self._chance(0.5):
            self.next_far += 1
            far = self.next_far
            actor.spaces[f"F{far}"] = [page] * new
            self._modify(actor, run.space, off, n, lock="")
            return [dict(base, sp=run.space, off=off, n=n, new=new, mode="dontunmap", id=far)]
        # MREMAP_FIXED into the arena: next to a mapping (so it may merge), over one, or anywhere
        others = [r for r in self._runs(actor, ["A"]) if r is not run]
        where = self._pick(("next", "next", "over", "anywhere"))
        if where == "next" and others:
            other = self._pick(others)
            dst = other.end if self._chance(0.5) else other.start - new
        elif where == "over" and others:
            other = self._pick(others)
            dst = other.start + self.rng.randrange(other.pages)
        else:
            dst = self.rng.randrange(ARENA_PAGES - new)
        dst = max(0, min(dst, ARENA_PAGES - new))
        if run.space == "A" and dst < off + n and off < dst + new:
            return []  # source and destination overlap: EINVAL, not interesting
        if dontunmap:
            self._modify(actor, run.space, off, n, lock="")
        else:
            self._set(actor, run.space, off, n, None)
        self._set(actor, "A", dst, new, page)
        return [dict(base, sp=run.space, off=off, n=n, new=new, mode="dontunmap" if dontunmap else "fixed",
                     dsp="A", doff=dst)]

    def _op_lock(self, actor: _Actor, kind: Optional[str] = None) -> List[Op]:
        runs = self._runs(actor)
        if actor.brk and self._chance(0.15):
            run = _Run("B", 0, actor.brk, None)
        elif runs:
            run = self._pick(runs)
        else:
            return []
        off, n = self._sub(run)
        kind = kind or self._pick(("mlock", "mlock", "munlock", "onfault"))
        if run.space != "B":
            self._modify(actor, run.space, off, n, lock={"mlock": "L", "munlock": "", "onfault": "F"}[kind])
        return [dict(self._base(actor, "lock"), sp=run.space, off=off, n=n, kind=kind)]

    def _op_lockall(self, actor: _Actor) -> List[Op]:
        kind = self._pick(("cf", "cf", "cf", "f", "c", "cfo"))
        lock = "F" if "o" in kind else "L"
        if "c" in kind:
            for name in actor.spaces:
                self._modify(actor, name, 0, len(actor.spaces[name]), lock=lock)
        if "f" in kind:
            actor.def_lock = lock
        return [dict(self._base(actor, "lockall"), kind=kind)]

    def _op_unlockall(self, actor: _Actor) -> List[Op]:
        for name in actor.spaces:
            self._modify(actor, name, 0, len(actor.spaces[name]), lock="")
        actor.def_lock = ""
        return [self._base(actor, "unlockall")]

    def _op_advise(self, actor: _Actor) -> List[Op]:
        runs = self._runs(actor)
        if not runs:
            return []
        run = self._pick(runs)
        off, n = self._sub(run)
        have = run.page[4] if run.page else ""
        undo = {"d": "dofork", "w": "keeponfork", "h": "nohugepage", "m": "unmergeable"}
        if have and self._chance(0.5):
            letter = self._pick(have)
            adv, advice = undo[letter], have.replace(letter, "")
        else:
            own = ADVISED.get(self.flag)  # (no draw for the other flags: their lists stay as they were)
            adv = own if own is not None and self._chance(0.6) else self._pick(("dontfork", "wipeonfork", "hugepage"))
            letter = {"dontfork": "d", "wipeonfork": "w", "hugepage": "h", "mergeable": "m"}[adv]
            advice = "".join(sorted(set(have + letter)))
        self._modify(actor, run.space, off, n, advice=advice)
        return [dict(self._base(actor, "advise"), sp=run.space, off=off, n=n, adv=adv)]

    def _op_touch(self, actor: _Actor) -> List[Op]:
        runs = [r for r in self._runs(actor) if r.page and r.page[1] == "rw"]
        if not runs:
            return []
        run = self._pick(runs)
        off, n = self._sub(run)
        return [dict(self._base(actor, "touch"), sp=run.space, off=off, n=n)]

    def _op_brk(self, actor: _Actor) -> List[Op]:
        if actor.brk and self._chance(0.4):
            delta = -(1 + self.rng.randrange(actor.brk))
        else:
            delta = 1 + self.rng.randrange(16)
        actor.brk = max(0, actor.brk + delta)
        return [dict(self._base(actor, "brk"), delta=delta)]

    def _op_gd(self, actor: _Actor) -> List[Op]:
        """A MAP_GROWSDOWN mapping with a hole below it (and a placeholder below the hole, which
        being inaccessible needs no stack guard gap)."""
        hole, n = 2 + self.rng.randrange(7), 1 + self.rng.randrange(6)
        off = 1 + hole + self.rng.randrange(ARENA_PAGES - hole - n - 1)
        create, lock = self._create_flags()
        ops = [dict(self._base(actor, "unmap"), sp="A", off=off - hole, n=hole),
               dict(self._base(actor, "map"), sp="A", off=off, n=n, prot="rw", mf=self._mf(create, lock) + "g")]
        self._set(actor, "A", off - hole - 1, 1, PLACEHOLDER)
        self._set(actor, "A", off - hole, hole, None)
        self._set(actor, "A", off, n, (self._extent(), "rw", create + "g", lock or actor.def_lock, ""))
        return ops

    def _op_grow(self, actor: _Actor) -> List[Op]:
        """Touch below a MAP_GROWSDOWN mapping: the kernel expands it downwards."""
        arena = actor.spaces["A"]
        gds = [r for r in self._runs(actor, ["A"]) if r.page and "g" in r.page[2]]
        if not gds:
            return []
        run = self._pick(gds)
        below = 0
        while run.start - below - 1 >= 0 and arena[run.start - below - 1] is None:
            below += 1
        if below < 2:
            return []
        k = 1 + self.rng.randrange(below - 1)  # keep one hole page: growth stops short of the neighbour
        self._set(actor, "A", run.start - k, k, run.page)
        return [dict(self._base(actor, "grow"), sp="A", off=run.start - k)]

    def _op_recurse(self, actor: _Actor) -> List[Op]:
        return [{"op": "recurse", "a": actor.ident, "t": 0, "depth": 50 + self.rng.randrange(450)}]

    def _op_threads(self, actor: _Actor) -> List[Op]:
        actor.threads = self.rng.randrange(4)
        return [{"op": "threads", "a": actor.ident, "n": actor.threads}]

    def _new_actor(self) -> int:
        ident = self.next_actor
        self.next_actor += 1
        return ident

    def _op_fork(self, actor: _Actor) -> List[Op]:
        if len(self.actors) >= MAX_ACTORS:
            return []
        child = _Actor(self._new_actor(), actor.threads)
        for name, pages in actor.spaces.items():
            child.spaces[name] = [None if p is not None and "d" in p[4]
                                  else (p[0], p[1], p[2], "", p[4]) if p is not None else None for p in pages]
        child.brk = actor.brk
        self.actors[child.ident] = child
        return [{"op": "fork", "a": actor.ident, "child": child.ident}]

    def _op_spawn(self, actor: _Actor) -> List[Op]:
        if len(self.actors) >= MAX_ACTORS:
            return []
        child = _Actor.fresh(self._new_actor(), 1)
        self.actors[child.ident] = child
        return [{"op": "spawn", "a": actor.ident, "child": child.ident}]

    def _op_exec(self, actor: _Actor) -> List[Op]:
        self.actors[actor.ident] = _Actor.fresh(actor.ident, 1)
        return [{"op": "exec", "a": actor.ident}]

    def _op_exit(self, actor: _Actor) -> List[Op]:
        if len(self.actors) < 2:
            return []
        del self.actors[actor.ident]
        return [{"op": "exit", "a": actor.ident}]

    # -- the list -------------------------------------------------------------------------------
    def _draw(self, actor: _Actor, memory_only: bool = False, kind: Optional[str] = None) -> List[Op]:
        weights = self.weights
        if memory_only:
            weights = [(k, w) for k, w in weights if k in MEMORY_OPS or k == "gd"]
        for _ in range(1 if kind else 20):
            chosen = kind or self._weighted(weights)
            name, _, mode = chosen.partition("/")
            method = getattr(self, f"_op_{name}")
            ops: List[Op] = method(actor, mode) if mode else method(actor)
            if ops:
                self._note(chosen, ops)
                return ops
        return []

    def _note(self, chosen: str, ops: List[Op]) -> None:
        self.covered.add(chosen.partition("/")[0])
        for op in ops:
            detail = op.get("mode") or op.get("kind") if op["op"] in ("remap", "lock") else None
            self.covered.add(f"{op['op']}/{detail}" if detail else op["op"])

    def _force(self, kind: str, live: List[_Actor]) -> List[Op]:
        """Draw this kind of operation, preparing for it when the state does not allow it."""
        for _ in range(5):
            for actor in live:
                drawn = self._draw(actor, kind=kind)
                if drawn:
                    return drawn
        actor = live[0]
        if kind == "grow":
            first = self._draw(actor, kind="gd")
            return first + self._draw(actor, kind="grow") if first else []
        if kind in ("fork", "spawn") and len(live) > 1:
            return self._draw(live[-1], kind="exit") + self._draw(actor, kind=kind)
        if kind.partition("/")[0] in ("protect", "remap", "lock", "advise") and not any(map(self._runs, live)):
            # no live actor has memory left (say a child forked without its VM_DONTCOPY memory): map some
            first = self._draw(actor, kind="map")
            return first + self._draw(actor, kind=kind) if first else []
        return []

    def _missing(self) -> List[str]:
        return [kind for kind in COVERAGE if kind not in self.covered]

    def generate(self) -> List[Op]:
        ops = self.ops
        for _ in range(2):
            ident = self._new_actor()
            self.actors[ident] = _Actor.fresh(ident, 1)
            ops.append({"op": "start", "child": ident})
        emitted = 0
        next_check = 4 + self.rng.randrange(8)
        checks = 0
        while emitted < self.count:
            live = list(self.actors.values())
            missing = self._missing() if emitted >= self.count // 2 else []
            if missing:  # every list exercises every operation (where the model lets it)
                drawn = self._force(missing[0], live)
                if not drawn:
                    self.covered.add(missing[0])  # not possible in this state: give up on it
                ops.extend(drawn)
                emitted += max(1, len(drawn))
            elif len(live) >= 2 and self._chance(0.12):
                group: List[Op] = []
                picked = list(live)
                for _ in range(min(len(picked), 2 + self.rng.randrange(2))):
                    actor = picked.pop(self.rng.randrange(len(picked)))
                    drawn = self._draw(actor, memory_only=True)
                    if len(drawn) == 1:
                        group.append(drawn[0])
                    else:
                        ops.extend(drawn)  # a compound operation runs before the group
                if len(group) > 1:
                    ops.append({"op": "par", "ops": group})
                else:
                    ops.extend(group)
                emitted += max(1, len(group))
            else:
                drawn = self._draw(self._pick(live))
                ops.extend(drawn)
                emitted += max(1, len(drawn))
            if emitted >= next_check:
                checks += 1
                ops.append({"op": "check", "n": checks})
                next_check = emitted + 5 + self.rng.randrange(10)
        if ops[-1]["op"] != "check":
            ops.append({"op": "check", "n": checks + 1})
        return ops


def generate(seed: int, flag: str, count: int = 100) -> List[Op]:
    """The operation list of (seed, flag): `count` operations, checkpoints in between, a
    checkpoint at the end."""
    return _Generator(seed, flag, count).generate()


def ops_digest(ops: Sequence[Op]) -> str:
    """A short digest of an operation list (to tell that the host and a guest drew the same)."""
    text = json.dumps(list(ops), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
