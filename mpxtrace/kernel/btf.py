"""A minimal reader of the kernel's BTF (``/sys/kernel/btf/vmlinux``).

It answers the questions the tracer must not answer by version number: does function F
exist, what are its parameters (names, count, passed by value?), and where is field X of
struct S.  Only FUNC, FUNC_PROTO, STRUCT/UNION and the modifiers between them are decoded;
other kinds are skipped by their documented sizes (include/uapi/linux/btf.h).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Protocol, Tuple

__all__ = ["Btf", "BtfError", "BtfView", "FuncParam", "load_vmlinux_btf"]

BTF_MAGIC = 0xEB9F
# kind -> bytes of extra data: fixed, and per vlen entry
_KIND_EXTRA: Dict[int, Tuple[int, int]] = {
    0: (0, 0),    # UNKN
    1: (4, 0),    # INT
    2: (0, 0),    # PTR
    3: (12, 0),   # ARRAY
    4: (0, 12),   # STRUCT
    5: (0, 12),   # UNION
    6: (0, 8),    # ENUM
    7: (0, 0),    # FWD
    8: (0, 0),    # TYPEDEF
    9: (0, 0),    # VOLATILE
    10: (0, 0),   # CONST
    11: (0, 0),   # RESTRICT
    12: (0, 0),   # FUNC
    13: (0, 8),   # FUNC_PROTO
    14: (4, 0),   # VAR
    15: (0, 12),  # DATASEC
    16: (0, 0),   # FLOAT
    17: (4, 0),   # DECL_TAG
    18: (0, 0),   # TYPE_TAG
    19: (0, 12),  # ENUM64
}
PTR, STRUCT, UNION, FUNC, FUNC_PROTO = 2, 4, 5, 12, 13
_MODIFIERS = {8, 9, 10, 11, 18}  # typedef, volatile, const, restrict, type_tag


class BtfError(Exception):
    pass


@dataclass(frozen=True)
class FuncParam:
    name: str
    by_value_aggregate: bool  # a struct or union passed by value: fentry cannot take it on older kernels
    # a pointer to something other than a struct (struct vm_area_struct **, bool *): the 5.10
    # verifier refuses fentry access to it ("arg0 type PTR is not a struct", seen in the lab);
    # bb6728d75611 ("bpf: Allow access to int pointer arguments in tracing programs") lets
    # later kernels read int pointers as scalars
    non_struct_pointer: bool = False


class BtfView(Protocol):
    """The questions the planner asks of BTF (Btf parses the blob; factcache.KnownBtf remembers answers)."""

    def func_params(self, name: str) -> Optional[List[FuncParam]]: ...

    def field_offset(self, struct_name: str, field: str) -> Optional[int]: ...

    def has_struct(self, name: str) -> bool: ...


@dataclass
class _Type:
    kind: int
    name: str
    ref: int  # size for STRUCT/UNION/INT..., referenced type for PTR/modifiers/FUNC
    members: List[Tuple[str, int, int]]  # (name, type, bit offset) for STRUCT/UNION; (name, type, 0) for FUNC_PROTO


class Btf:
    """Parsed lazily: one pass records where each type starts and indexes FUNC and STRUCT/UNION
    types by name offset; names, members and parameters are decoded only for the types asked
    about (the full decode of a 6.1 vmlinux took 3.3 s of start-up in the TCG lab)."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BtfError("BTF blob too short")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data)
        if magic != BTF_MAGIC:
            raise BtfError("not a little-endian BTF blob")
        base = hdr_len
        self._data = data
        self._strings = data[base + str_off: base + str_off + str_len]
        self._positions: List[int] = [0]  # type id -> offset of its record in data (id 0 is void)
        self._decoded: Dict[int, Optional[_Type]] = {0: None}
        # name offset -> type ids, in id order (the first wins, as names are looked up)
        self._funcs_by_name: Dict[int, List[int]] = {}
        self._structs_by_name: Dict[int, List[int]] = {}
        positions, funcs, structs = self._positions, self._funcs_by_name, self._structs_by_name
        unpack, extra = struct.Struct("<II").unpack_from, _KIND_EXTRA
        pos, end = base + type_off, base + type_off + type_len
        while pos < end:
            name_off, info = unpack(data, pos)
            kind = (info >> 24) & 0x1F
            sizes = extra.get(kind)
            if sizes is None:
                raise BtfError(f"unknown BTF kind {kind}")
            tid = len(positions)
            positions.append(pos)
            if kind == FUNC:
                funcs.setdefault(name_off, []).append(tid)
            elif (kind == STRUCT or kind == UNION) and name_off:
                structs.setdefault(name_off, []).append(tid)
            pos += 12 + sizes[0] + sizes[1] * (info & 0xFFFF)

    def _str(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        return self._strings[off:end].decode("ascii", "replace")

    def _name_offsets(self, name: str) -> List[int]:
        """Every string offset whose string is `name` (a reference may point into the middle of
        a longer string, so each occurrence of name + NUL counts)."""
        needle = name.encode("ascii", "replace") + b"\0"
        found: List[int] = []
        start = 0
        while True:
            at = self._strings.find(needle, start)
            if at < 0:
                return found
            found.append(at)
            start = at + 1

    def _lookup(self, index: Dict[int, List[int]], name: str) -> Optional[int]:
        tids = [tid for off in self._name_offsets(name) for tid in index.get(off, ())]
        return min(tids) if tids else None

    def _type(self, tid: int) -> Optional[_Type]:
        if tid in self._decoded:
            return self._decoded[tid]
        if not 0 < tid < len(self._positions):
            return None
        data, pos = self._data, self._positions[tid]
        name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
        pos += 12
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        fixed = _KIND_EXTRA[kind][0]
        members: List[Tuple[str, int, int]] = []
        if kind in (STRUCT, UNION):
            kind_flag = info >> 31
            for i in range(vlen):
                m_name, m_type, m_off = struct.unpack_from("<III", data, pos + fixed + 12 * i)
                members.append((self._str(m_name), m_type, m_off & 0xFFFFFF if kind_flag else m_off))
        elif kind == FUNC_PROTO:
            for i in range(vlen):
                p_name, p_type = struct.unpack_from("<II", data, pos + fixed + 8 * i)
                members.append((self._str(p_name), p_type, 0))
        decoded = _Type(kind, self._str(name_off), size_or_type, members)
        self._decoded[tid] = decoded
        return decoded

    def _resolve(self, tid: int) -> Optional[_Type]:
        for _ in range(32):
            t = self._type(tid)
            if t is None or t.kind not in _MODIFIERS:
                return t
            tid = t.ref
        return None

    def func_params(self, name: str) -> Optional[List[FuncParam]]:
        tid = self._lookup(self._funcs_by_name, name)
        func = self._type(tid) if tid is not None else None
        if func is None:
            return None
        proto = self._type(func.ref)
        if proto is None or proto.kind != FUNC_PROTO:
            return None
        params = []
        for p_name, p_type, _ in proto.members:
            t = self._resolve(p_type)
            pointee = self._resolve(t.ref) if t is not None and t.kind == PTR else None
            params.append(FuncParam(p_name, t is not None and t.kind in (STRUCT, UNION),
                                    t is not None and t.kind == PTR and (pointee is None or pointee.kind not in (STRUCT, UNION))))
        return params

    def field_offset(self, struct_name: str, field: str) -> Optional[int]:
        """Byte offset of `field` in `struct struct_name`, looking through anonymous members."""
        tid = self._lookup(self._structs_by_name, struct_name)
        if tid is None:
            return None
        return self._find_field(tid, field, 0)

    def has_struct(self, name: str) -> bool:
        return self._lookup(self._structs_by_name, name) is not None

    def _find_field(self, tid: int, field: str, base_bits: int) -> Optional[int]:
        t = self._resolve(tid)
        if t is None or t.kind not in (STRUCT, UNION):
            return None
        for m_name, m_type, bit_off in t.members:
            if m_name == field:
                return (base_bits + bit_off) // 8
        for m_name, m_type, bit_off in t.members:
            if not m_name:
                found = self._find_field(m_type, field, base_bits + bit_off)
                if found is not None:
                    return found
        return None


def load_vmlinux_btf(path: Path = Path("/sys/kernel/btf/vmlinux")) -> Optional[Btf]:
    """The running kernel's BTF, or None when it has none (CONFIG_DEBUG_INFO_BTF unset)."""
    try:
        return Btf(path.read_bytes())
    except (OSError, BtfError):
        return None
