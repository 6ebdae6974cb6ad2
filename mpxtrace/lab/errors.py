"""The one exception type of the kernel lab."""

from __future__ import annotations


class LabError(RuntimeError):
    """Building a guest image or running a guest failed.

    The message always names what failed and, where one exists, the log file
    that explains why (a build log or a guest console log).
    """
