"""The lab kernels as data: which Debian suite provides each one and its guest root fs.

The version in a key is the kernel generation the suite ships; the exact
package is resolved from the archive at build time (see ``resolve.py``), by
following the ``linux-image-cloud-amd64`` metapackage.  Cloud kernels are used
because NVMe and ext4 are built in, so no initramfs is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

# Metapackage that always depends on the suite's newest cloud kernel image.
KERNEL_METAPACKAGE = "linux-image-cloud-amd64"


@dataclass(frozen=True)
class KernelSpec:
    key: str
    suite: str  # debootstrap suite of the guest root fs (one per suite: BCC must match headers)
    security: bool  # also use <suite>-security (where kernel updates land)
    # sid's Release file is regularly past its Valid-Until; other suites must stay checked.
    check_valid_until: bool = True
    note: str = ""

    def apt_suites(self) -> Tuple[Tuple[str, str], ...]:
        """(archive, suite) pairs, archive being "debian" or "debian-security"."""
        pairs = [("debian", self.suite)]
        if self.security:
            pairs.append(("debian-security", f"{self.suite}-security"))
        return tuple(pairs)


KERNELS: Dict[str, KernelSpec] = {
    "5.10": KernelSpec("5.10", "bullseye", True, note="rbtree VMAs, __do_munmap"),
    "6.1": KernelSpec("6.1", "bookworm", True, note="maple tree, do_mas_munmap"),
    "6.12": KernelSpec("6.12", "trixie", True, note="vma_merge_new_range, do_vmi_munmap"),
    # Named after the generation seen when written; resolves to whatever sid has now.
    "7.2": KernelSpec("7.2", "sid", False, check_valid_until=False, note="newest (sid)"),
}

ALIASES: Dict[str, str] = {"sid": "7.2", "newest": "7.2", "bullseye": "5.10",
                           "bookworm": "6.1", "trixie": "6.12"}

DEFAULT_KERNEL = "6.1"


def get_kernel(name: str) -> KernelSpec:
    """Look up a kernel by key or alias; raise KeyError listing the valid names."""
    key = ALIASES.get(name, name)
    try:
        return KERNELS[key]
    except KeyError:
        valid = ", ".join(list(KERNELS) + list(ALIASES))
        raise KeyError(f"unknown lab kernel {name!r}; choose one of: {valid}") from None
