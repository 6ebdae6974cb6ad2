"""The slow kernel facts (kallsyms, ftrace's traceable functions, BTF), remembered per boot.

Reading /proc/kallsyms and available_filter_functions and parsing vmlinux BTF in Python took
4-5 s of every start-up in the 6.1 lab (TCG).  What the planner asks of them is a pure function
of the running kernel and its loaded modules, so the answers to the questions mpxtrace asks
(symbols present, traceable, function parameters, struct field offsets) are written once to a
root-only cache and reused while the key matches: the boot (boot_id), the release, the loaded
modules, the question set and the cache format.  A question the cache has no answer for is
answered from the kernel itself (read lazily, once): a cached run can be slower, never different.

Safety: the directory is created 0700 and used only when it is a real directory (no symlink in
any component) owned by the caller with no group/other access; files are created 0600 under a
temporary name with O_EXCL|O_NOFOLLOW and renamed into place, read with O_NOFOLLOW and used
only when regular and owned by the caller.  Anything odd means "no cache", never an error.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import AbstractSet, Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Tuple

from .btf import Btf, BtfView, FuncParam

__all__ = ["CACHE_DIR", "HeavyFacts", "Questions", "KnownNames", "KnownBtf", "heavy_facts", "cache_key",
           "default_questions"]

CACHE_DIR = Path("/var/cache/mpxtrace")
FORMAT = 1
_PREFIX = "kernel-facts-"
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Questions:
    """What the planner and doctor ask of the slow facts."""

    symbols: Tuple[str, ...]  # in kallsyms? traceable by ftrace?
    funcs: Tuple[str, ...]  # BTF parameters
    fields: Tuple[Tuple[str, str], ...]  # (struct, field) offsets in BTF
    structs: Tuple[str, ...]  # struct present in BTF

    def digest(self) -> str:
        text = json.dumps([self.symbols, self.funcs, self.fields, self.structs], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# Symbols asked by name outside HOOKS (features.py and hooks.py); tests/test_factcache.py checks
# that every has_symbol("...") literal in mpxtrace/ is listed here.
EXTRA_SYMBOLS = ("bpf_trampoline_link_prog", "bpf_ringbuf_reserve", "munlock_vma_pages_range", "do_vmi_munmap")
EXTRA_STRUCTS = ("bpf_ringbuf",)


def default_questions() -> Questions:
    # hooks imports features, which imports us lazily
    from .hooks import HOOKS, OPTIONAL_FIELDS, STRUCT_FIELDS, VMG_FIELDS
    symbols = sorted({s for spec in HOOKS for s in spec.symbols} | set(EXTRA_SYMBOLS))
    fields = sorted({(struct, name) for table in (STRUCT_FIELDS, VMG_FIELDS, OPTIONAL_FIELDS)
                     for struct, names in table.values() for name in names})
    structs = sorted({struct for struct, _ in fields} | set(EXTRA_STRUCTS))
    return Questions(tuple(symbols), tuple(symbols), tuple(fields), tuple(structs))


class KnownNames(AbstractSet[str]):
    """A set of kernel names answered from the cache for the names asked before; any other
    question (or iteration) reads the real set once through `load`."""

    def __init__(self, answers: Dict[str, bool], count: int, load: Callable[[], FrozenSet[str]]) -> None:
        self._answers = answers
        self._count = count
        self._load = load
        self._full: Optional[FrozenSet[str]] = None

    def full(self) -> FrozenSet[str]:
        if self._full is None:
            self._full = self._load()
        return self._full

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str) and name in self._answers:
            return self._answers[name]
        return name in self.full()

    def __len__(self) -> int:
        return self._count if self._full is None else len(self._full)

    def __iter__(self) -> Iterator[str]:
        return iter(self.full())


class KnownBtf:
    """Btf's questions answered from the cache; others parse the real BTF once."""

    def __init__(self, funcs: Dict[str, Optional[List[FuncParam]]], fields: Dict[Tuple[str, str], Optional[int]],
                 structs: Dict[str, bool], load: Callable[[], Optional[Btf]]) -> None:
        self._funcs, self._fields, self._structs = funcs, fields, structs
        self._load = load
        self._real: Optional[Btf] = None

    def _btf(self) -> Btf:
        if self._real is None:
            self._real = self._load()
            if self._real is None:
                raise RuntimeError("vmlinux BTF became unreadable after it was cached")
        return self._real

    def func_params(self, name: str) -> Optional[List[FuncParam]]:
        if name in self._funcs:
            params = self._funcs[name]
            return list(params) if params is not None else None
        return self._btf().func_params(name)

    def field_offset(self, struct_name: str, field: str) -> Optional[int]:
        if (struct_name, field) in self._fields:
            return self._fields[(struct_name, field)]
        return self._btf().field_offset(struct_name, field)

    def has_struct(self, name: str) -> bool:
        if name in self._structs:
            return self._structs[name]
        return self._btf().has_struct(name)


@dataclass
class HeavyFacts:
    kallsyms: AbstractSet[str]
    kallsyms_readable: bool
    ftrace_functions: Optional[AbstractSet[str]]
    btf: Optional[BtfView]
    from_cache: bool = False


@dataclass
class Sources:
    """Where the facts come from (the real kernel; tests give fakes)."""

    kallsyms: Callable[[], Tuple[FrozenSet[str], bool]]
    ftrace_functions: Callable[[], Optional[FrozenSet[str]]]
    btf: Callable[[], Optional[Btf]]
    proc: Path = Path("/proc")


def cache_key(release: str, questions: Questions, proc: Path = Path("/proc")) -> Optional[str]:
    """None when the boot cannot be identified (then nothing is cached).  Loaded modules are
    part of the key: their symbols appear in kallsyms and available_filter_functions."""
    try:
        boot_id = (proc / "sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None
    if not boot_id:
        return None
    try:
        # name, size and load address: a module unloaded and loaded again gets a new address
        modules = sorted(" ".join(line.split()[0:2] + line.split()[5:6])
                         for line in (proc / "modules").read_text().splitlines() if line.strip())
    except OSError:
        modules = []
    text = json.dumps({"format": FORMAT, "boot_id": boot_id, "release": release, "modules": modules,
                       "questions": questions.digest()})
    return hashlib.sha256(text.encode()).hexdigest()


def _answers(live: HeavyFacts, questions: Questions) -> Dict[str, Any]:
    btf = live.btf
    assert btf is not None and live.ftrace_functions is not None
    funcs: Dict[str, Any] = {}
    for name in questions.funcs:
        params = btf.func_params(name)
        funcs[name] = None if params is None else [[p.name, p.by_value_aggregate, p.non_struct_pointer] for p in params]
    return {
        "kallsyms": {"count": len(live.kallsyms), "known": {s: s in live.kallsyms for s in questions.symbols}},
        "ftrace": {"count": len(live.ftrace_functions),
                   "known": {s: s in live.ftrace_functions for s in questions.symbols}},
        "btf": {"funcs": funcs,
                "fields": [[struct, name, btf.field_offset(struct, name)] for struct, name in questions.fields],
                "structs": {s: btf.has_struct(s) for s in questions.structs}},
    }


def _from_answers(data: Dict[str, Any], sources: Sources) -> HeavyFacts:
    """Raises (KeyError, TypeError, ValueError) on a malformed file: the caller probes live."""
    syms, fns, btf = data["kallsyms"], data["ftrace"], data["btf"]

    def names(section: Dict[str, Any], load: Callable[[], FrozenSet[str]]) -> KnownNames:
        known = {str(k): bool(v) for k, v in dict(section["known"]).items()}
        return KnownNames(known, int(section["count"]), load)

    def load_ftrace() -> FrozenSet[str]:
        return sources.ftrace_functions() or frozenset()

    funcs = {str(name): None if params is None else [FuncParam(str(p[0]), bool(p[1]), bool(p[2])) for p in params]
             for name, params in dict(btf["funcs"]).items()}
    fields = {(str(s), str(f)): None if off is None else int(off) for s, f, off in btf["fields"]}
    structs = {str(k): bool(v) for k, v in dict(btf["structs"]).items()}
    return HeavyFacts(kallsyms=names(syms, lambda: sources.kallsyms()[0]), kallsyms_readable=True,
                      ftrace_functions=names(fns, load_ftrace),
                      btf=KnownBtf(funcs, fields, structs, sources.btf), from_cache=True)


# -- the cache directory: no symlinks, ours alone ------------------------------------------------
def _open_private_dir(path: Path, create: bool) -> Optional[int]:
    """A descriptor of `path`, every component opened with O_NOFOLLOW; the last one created 0700
    when missing (and `create`).  None unless it is owned by us with no group/other access."""
    parts = [p for p in path.parts if p != "/"]
    if not path.is_absolute() or not parts:
        return None
    try:
        fd = os.open("/", _DIR_FLAGS)
    except OSError:
        return None
    try:
        for i, name in enumerate(parts):
            try:
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create or i != len(parts) - 1:
                    return None
                try:
                    os.mkdir(name, 0o700, dir_fd=fd)
                except FileExistsError:
                    pass
                nxt = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = nxt
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        good, fd = fd, -1
        return good
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def _read_cache(dirfd: int, name: str) -> Optional[Dict[str, Any]]:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            return None
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = json.loads(fh.read())
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


def _write_cache(dirfd: int, name: str, data: Dict[str, Any]) -> None:
    """Written under a temporary name and renamed: a reader never sees half a file.  Files of
    other keys (earlier boots, other module sets) are removed."""
    tmp = f".{name}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            json.dump(data, fh)
        os.rename(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    except OSError:
        try:
            os.unlink(tmp, dir_fd=dirfd)
        except OSError:
            pass
        return
    for other in os.listdir(dirfd):
        if other.startswith(_PREFIX) and other != name:
            try:
                os.unlink(other, dir_fd=dirfd)
            except OSError:  # another start removed it, or it is not a file: leave it
                pass


def _is_root() -> bool:
    return os.geteuid() == 0


def heavy_facts(release: str, sources: Sources, questions: Optional[Questions] = None,
                cache_dir: Optional[Path] = CACHE_DIR) -> HeavyFacts:
    """The slow facts, from the cache when its key matches, else read from the kernel (and,
    as root with everything readable, cached for the next start)."""
    questions = questions or default_questions()
    key = cache_key(release, questions, sources.proc) if cache_dir is not None and _is_root() else None
    if key is None or cache_dir is None:
        return _live(sources)
    name = f"{_PREFIX}{key}.json"
    dirfd = _open_private_dir(cache_dir, create=False)
    if dirfd is not None:
        try:
            data = _read_cache(dirfd, name)
        finally:
            os.close(dirfd)
        if data is not None and data.get("key") == key and data.get("format") == FORMAT:
            try:
                return _from_answers(data, sources)
            except (KeyError, TypeError, ValueError, IndexError):
                pass  # malformed: probe live and write it again
    live = _live(sources)
    # only what can be answered in full is cached; the directory is made only then (a host
    # that cannot trace is left as it was)
    if live.kallsyms_readable and live.ftrace_functions is not None and live.btf is not None:
        dirfd = _open_private_dir(cache_dir, create=True)
        if dirfd is not None:
            try:
                _write_cache(dirfd, name, {"format": FORMAT, "key": key, "release": release,
                                           **_answers(live, questions)})
            finally:
                os.close(dirfd)
    return live


def _live(sources: Sources) -> HeavyFacts:
    syms, readable = sources.kallsyms()
    return HeavyFacts(syms, readable, sources.ftrace_functions(), sources.btf())
