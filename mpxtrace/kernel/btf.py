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
from typing import Dict, List, Optional, Tuple

__all__ = ["Btf", "BtfError", "FuncParam", "load_vmlinux_btf"]

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


@dataclass
class _Type:
    kind: int
    name: str
    ref: int  # size for STRUCT/UNION/INT..., referenced type for PTR/modifiers/FUNC
    members: List[Tuple[str, int, int]]  # (name, type, bit offset) for STRUCT/UNION; (name, type, 0) for FUNC_PROTO


class Btf:
    def __init__(self, data: bytes) -> None:
        if len(data) < 24:
            raise BtfError("BTF blob too short")
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<HBBIIIII", data)
        if magic != BTF_MAGIC:
            raise BtfError("not a little-endian BTF blob")
        base = hdr_len
        self._strings = data[base + str_off: base + str_off + str_len]
        self._types: List[Optional[_Type]] = [None]  # type id 0 is void
        self._funcs: Dict[str, int] = {}
        self._structs: Dict[str, int] = {}
        pos, end = base + type_off, base + type_off + type_len
        while pos < end:
            name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            if kind not in _KIND_EXTRA:
                raise BtfError(f"unknown BTF kind {kind}")
            fixed, per = _KIND_EXTRA[kind]
            members: List[Tuple[str, int, int]] = []
            if kind in (STRUCT, UNION):
                kind_flag = info >> 31
                for i in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", data, pos + fixed + 12 * i)
                    bit_off = m_off & 0xFFFFFF if kind_flag else m_off
                    members.append((self._str(m_name), m_type, bit_off))
            elif kind == FUNC_PROTO:
                for i in range(vlen):
                    p_name, p_type = struct.unpack_from("<II", data, pos + fixed + 8 * i)
                    members.append((self._str(p_name), p_type, 0))
            pos += fixed + per * vlen
            name = self._str(name_off)
            self._types.append(_Type(kind, name, size_or_type, members))
            tid = len(self._types) - 1
            if kind == FUNC and name not in self._funcs:
                self._funcs[name] = tid
            elif kind in (STRUCT, UNION) and name and name not in self._structs:
                self._structs[name] = tid

    def _str(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        return self._strings[off:end].decode("ascii", "replace")

    def _resolve(self, tid: int) -> Optional[_Type]:
        for _ in range(32):
            t = self._types[tid] if 0 < tid < len(self._types) else None
            if t is None or t.kind not in _MODIFIERS:
                return t
            tid = t.ref
        return None

    def func_params(self, name: str) -> Optional[List[FuncParam]]:
        tid = self._funcs.get(name)
        if tid is None:
            return None
        proto = self._types[self._types[tid].ref]  # type: ignore[union-attr]
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
        tid = self._structs.get(struct_name)
        if tid is None:
            return None
        return self._find_field(tid, field, 0)

    def has_struct(self, name: str) -> bool:
        return name in self._structs

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
