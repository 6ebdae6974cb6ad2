"""Resolve a lab kernel to exact package versions from the suite's package lists.

Pure logic: it only needs a ``show(package) -> stanza | None`` function, so it is
tested with recorded ``apt-cache show`` output; ``aptstate.py`` supplies the real one.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable, Dict, Optional

from .control import dep_names, python_minor
from .errors import LabError
from .kernels import KERNEL_METAPACKAGE, KernelSpec

Show = Callable[[str], Optional[Dict[str, str]]]

BCC_PACKAGE = "python3-bpfcc"


@dataclass(frozen=True)
class Resolved:
    kernel_key: str
    suite: str
    release: str  # what `uname -r` prints, e.g. 6.1.0-56-cloud-amd64
    image_package: str
    image_version: str
    vmlinuz_package: str  # the package that really contains vmlinuz
    vmlinuz_path: str  # path of vmlinuz inside that package
    headers_package: str
    headers_version: str
    bcc_version: str
    python_package_version: str
    python_version: str  # X.Y, for pip's --python-version

    def to_dict(self) -> Dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, str]) -> "Resolved":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


def _need(show: Show, package: str, why: str) -> Dict[str, str]:
    stanza = show(package)
    if not stanza or "Version" not in stanza:
        raise LabError(f"package {package} not found in the package lists ({why})")
    return stanza


def resolve_kernel(spec: KernelSpec, show: Show) -> Resolved:
    meta = _need(show, KERNEL_METAPACKAGE, f"{spec.suite} cloud kernel metapackage")
    images = [n for n in dep_names(meta)
              if n.startswith("linux-image-") and n != KERNEL_METAPACKAGE
              and re.match(r"^linux-image-\d", n)]
    if len(images) != 1:
        raise LabError(f"{KERNEL_METAPACKAGE} in {spec.suite}: expected one linux-image-<version> "
                       f"dependency, found {images!r} in {meta.get('Depends', '')!r}")
    image_package = images[0]
    release = image_package[len("linux-image-"):]
    image = _need(show, image_package, "kernel image")

    # sid splits the kernel: linux-image-<rel> is a metapackage and vmlinuz sits in
    # linux-binary-<rel> under /usr/lib/modules; older suites ship /boot/vmlinuz-<rel>.
    binary = f"linux-binary-{release}"
    if binary in dep_names(image):
        vmlinuz_package, vmlinuz_path = binary, f"usr/lib/modules/{release}/vmlinuz"
        _need(show, binary, "kernel binary")
    else:
        vmlinuz_package, vmlinuz_path = image_package, f"boot/vmlinuz-{release}"

    headers_package = f"linux-headers-{release}"
    headers = _need(show, headers_package, "BCC compiles against the exactly matching headers")
    if headers["Version"] != image["Version"]:
        raise LabError(f"{headers_package} {headers['Version']} does not match "
                       f"{image_package} {image['Version']} in {spec.suite}")

    bcc = _need(show, BCC_PACKAGE, "BCC")
    python = _need(show, "python3", "guest interpreter")
    return Resolved(
        kernel_key=spec.key, suite=spec.suite, release=release,
        image_package=image_package, image_version=image["Version"],
        vmlinuz_package=vmlinuz_package, vmlinuz_path=vmlinuz_path,
        headers_package=headers_package, headers_version=headers["Version"],
        bcc_version=bcc["Version"], python_package_version=python["Version"],
        python_version=python_minor(python["Version"]),
    )
