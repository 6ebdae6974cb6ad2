"""Runs INSIDE a lab guest (Python >= 3.9, BCC from the suite): report what the kernel offers.

Prints one line ``PROBE-JSON {...}`` and writes the same to /mnt/out/probe.json.
Used by test_lab_boot.py and scripts/lab-symbols.py.
"""

import glob
import json
import mmap
import os
import platform
import re
import sys

SYMBOLS = [
    "perf_event_mmap", "khugepaged_enter_vma", "vma_merge", "vma_merge_new_range", "vma_modify",
    "vma_modify_flags", "vma_expand", "__vma_adjust", "vma_complete", "commit_merge",
    "mmap_region", "__mmap_region", "__split_vma", "split_vma", "copy_vma", "copy_vma_and_data",
    "vm_area_free", "vm_area_dup", "remove_vma", "do_munmap", "__do_munmap", "do_mas_munmap",
    "do_vmi_munmap", "do_vmi_align_munmap", "exit_mmap", "dup_mmap", "anon_vma_fork",
    "wake_up_new_task", "mlock_fixup", "mprotect_fixup", "madvise_update_vma",
    "apply_vma_lock_flags",
]


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def kallsyms():
    names = set()
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                names.add(parts[2])
    return names


def filter_functions():
    text = read("/sys/kernel/tracing/available_filter_functions")
    if text is None:
        return None
    return {line.split()[0] for line in text.splitlines() if line.strip()}


def kprobe_blacklist():
    text = read("/sys/kernel/debug/kprobes/blacklist")
    if text is None:
        return None
    return {line.split()[-1] for line in text.splitlines() if line.strip()}


def struct_body(text, name):
    m = re.search(r"\bstruct\s+" + re.escape(name) + r"\s*\{", text)
    if not m:
        return None
    depth, i = 1, m.end()
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[m.end():i - 1]


def struct_fields():
    """Which headers define the structs, and whether the fields of interest exist."""
    out = {}
    files = []
    for pattern in ("/usr/src/linux-headers-*/include/linux/mm_types.h",
                    "/usr/src/linux-headers-*/mm/vma.h"):
        files.extend(sorted(glob.glob(pattern)))
    for struct, fields in (("vm_area_struct", ("vm_flags", "__vm_flags")),
                           ("vma_merge_struct", ("flags", "vm_flags"))):
        entry = {"found_in": None}
        for path in files:
            body = struct_body(read(path) or "", struct)
            if body is not None:
                body = re.sub(r"/\*.*?\*/", "", body, flags=re.S)
                entry["found_in"] = path
                for field in fields:
                    entry[field] = bool(re.search(r"\b" + field + r"\s*(;|:|\[)", body))
                break
        out[struct] = entry
    out["header_files_searched"] = files
    btf = btf_struct_members(["vm_area_struct", "vma_merge_struct"])
    out["btf"] = {struct: (None if members is None else {f: f in members for f in fields})
                  for struct, fields in (("vm_area_struct", ("vm_flags", "__vm_flags", "flags")),
                                         ("vma_merge_struct", ("flags", "vm_flags")))
                  for members in [btf[struct]]}
    return out


# Extra bytes after the 12-byte common header, per BTF kind (see kernel Documentation/bpf/btf.rst).
_BTF_EXTRA = {1: lambda v: 4, 3: lambda v: 12, 4: lambda v: 12 * v, 5: lambda v: 12 * v,
              6: lambda v: 8 * v, 13: lambda v: 8 * v, 14: lambda v: 4, 15: lambda v: 12 * v,
              17: lambda v: 4, 19: lambda v: 12 * v}


def btf_struct_members(wanted, path="/sys/kernel/btf/vmlinux"):
    """{struct: set of member names (anonymous unions/structs flattened) or None}.

    BTF covers structs private to mm/ (vma_merge_struct lives in mm/vma.h, which
    Debian's header packages do not ship)."""
    import struct as st
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return {w: None for w in wanted}
    magic, _ver, _flags, hdr_len, type_off, type_len, str_off, _str_len = st.unpack_from("<HBBIIIII", data)
    if magic != 0xEB9F:
        return {w: None for w in wanted}
    strings = hdr_len + str_off

    def name(off):
        end = data.index(b"\0", strings + off)
        return data[strings + off:end].decode()

    types = [None]  # type ids start at 1
    pos, end = hdr_len + type_off, hdr_len + type_off + type_len
    while pos < end:
        name_off, info, _size = st.unpack_from("<III", data, pos)
        kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
        members = None
        if kind in (4, 5):
            members = [st.unpack_from("<III", data, pos + 12 + 12 * i)[:2] for i in range(vlen)]
        types.append((kind, name_off, members))
        pos += 12 + _BTF_EXTRA.get(kind, lambda v: 0)(vlen)

    def flat(tid, depth=0):
        kind, _n, members = types[tid]
        out = set()
        for m_name, m_type in members or ():
            if m_name:
                out.add(name(m_name))
            elif depth < 5 and types[m_type][0] in (4, 5):  # anonymous struct/union
                out |= flat(m_type, depth + 1)
        return out

    result = {w: None for w in wanted}
    for tid in range(1, len(types)):
        kind, n, members = types[tid]
        if kind == 4 and n and name(n) in result and result[name(n)] is None:
            result[name(n)] = flat(tid)
    return result


def bcc_attach():
    """Compile and attach a kprobe on mmap_region; count 50 mmaps of our own."""
    result = {}
    try:
        import bcc
        result["bcc_version"] = getattr(bcc, "__version__", None)
        result["support_kfunc"] = bool(bcc.BPF.support_kfunc())
        prog = """
BPF_ARRAY(counts, u64, 1);
int on_mmap_region(void *ctx) {
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET) return 0;
    int zero = 0;
    u64 *v = counts.lookup(&zero);
    if (v) __sync_fetch_and_add(v, 1);
    return 0;
}
""".replace("TARGET", str(os.getpid()))
        b = bcc.BPF(text=prog)
        b.attach_kprobe(event="mmap_region", fn_name="on_mmap_region")
        maps = [mmap.mmap(-1, 4096 * (i + 1)) for i in range(50)]
        count = b["counts"][0].value
        for m in maps:
            m.close()
        b.cleanup()
        result["kprobe_mmap_region_count"] = int(count)
    except Exception as exc:  # reported, the host test decides
        result["error"] = "%s: %s" % (type(exc).__name__, exc)
    return result


def main():
    ks = kallsyms()
    ff = filter_functions()
    bl = kprobe_blacklist()
    report = {
        "uname_r": platform.release(),
        "python": "%d.%d.%d" % sys.version_info[:3],
        "lockdown": (read("/sys/kernel/security/lockdown") or "").strip() or None,
        "watchdog": {knob: (read("/proc/sys/kernel/" + knob) or "").strip() for knob in
                     ("watchdog_thresh", "softlockup_panic", "softlockup_all_cpu_backtrace", "panic_print")},
        "kprobes_dir_readable": os.access("/sys/kernel/debug/kprobes/list", os.R_OK),
        "filter_functions_readable": ff is not None,
        "symbols": {s: {"kallsyms": s in ks,
                        "filter_functions": None if ff is None else s in ff} for s in SYMBOLS},
        "perf_event_mmap_blacklisted": None if bl is None else "perf_event_mmap" in bl,
        "structs": struct_fields(),
    }
    try:
        import click
        import pyroute2
        from importlib.metadata import version
        report["click"] = version("click")
        report["pyroute2"] = version("pyroute2")
        report["deps_from"] = [os.path.dirname(os.path.dirname(click.__file__)),
                               os.path.dirname(os.path.dirname(pyroute2.__file__))]
    except Exception as exc:
        report["deps_error"] = "%s: %s" % (type(exc).__name__, exc)
    report["bcc"] = bcc_attach()
    line = json.dumps(report, sort_keys=True)
    if os.path.isdir("/mnt/out"):
        with open("/mnt/out/probe.json", "w") as f:
            f.write(line + "\n")
    print("PROBE-JSON " + line)


if __name__ == "__main__":
    main()
