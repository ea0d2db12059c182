"""Device, precision and memory-format choices, made in one place."""

from __future__ import annotations

import contextlib
import functools

import torch


def pick_device(name: str | None = None) -> torch.device:
    """``name`` if given, else CUDA when present, else CPU."""
    if name and name != "auto":
        return torch.device(name)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.cache
def _cpu_has_native_bf16() -> bool:
    # bf16 autocast only pays off with AVX512-BF16 / AMX; elsewhere it is emulated and slower.
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(torch.cpu, probe, None)
        if fn is not None:
            try:
                if fn():
                    return True
            except Exception:  # noqa: BLE001 - a failing probe just means "no"
                pass
    return False


def bf16_available(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_has_native_bf16()


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast where the hardware supports it natively, else a no-op context."""
    if enabled and bf16_available(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_precision(setting: str, device: torch.device) -> bool:
    """``'auto'|'bf16'|'fp32'`` → whether to use bf16 autocast."""
    if setting == "fp32":
        return False
    if setting == "bf16":
        return True
    return bf16_available(device)
