"""The architectures this project trains and compares, by name (no torch import: pages list them)."""

from __future__ import annotations

from spermlib.errors import SpermlibError

ARCHS = ("simplecnn", "effnet", "effnet_cbam")
DEFAULT_ARCH = "effnet_cbam"  # the paper's proposed model: preselected wherever a model is chosen


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise SpermlibError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    return arch
