"""Device, precision and memory-format choices, made in one place."""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass

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


def autocast(device: torch.device, enabled: bool = True, emulated: bool = False):
    """bf16 autocast where the hardware supports it natively, else a no-op context; ``emulated`` forces it on a
    CPU without native bf16 (slow: only to reproduce numbers another machine computed in bf16)."""
    if enabled and (bf16_available(device) or (emulated and device.type == "cpu")):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_precision(setting: str, device: torch.device) -> bool:
    """``'auto'|'bf16'|'fp32'`` → whether to use bf16 autocast."""
    if setting == "fp32":
        return False
    if setting == "bf16":
        return True
    return bf16_available(device)


@dataclass(frozen=True)
class Precision:
    """How inference runs: bf16 autocast or fp32, channels_last or not. Its ``name`` is what results record."""

    bf16: bool
    channels_last: bool = True
    emulated: bool = False  # bf16 on a CPU without native bf16 (see :func:`reproducing`); the same numbers, slower

    @property
    def name(self) -> str:
        """``"bf16-autocast+channels_last"``, ``"fp32+channels_last"``, ``"fp32"`` …"""
        return "+".join(["bf16-autocast" if self.bf16 else "fp32"] + (["channels_last"] if self.channels_last else []))

    def autocast(self, device: torch.device):
        return autocast(device, self.bf16, self.emulated)


FP32 = Precision(bf16=False, channels_last=False)


def precision_policy(device: torch.device, setting: str = "auto", channels_last: bool = True) -> Precision:
    """The policy for ``device``: ``setting`` ``'auto'|'bf16'|'fp32'``, bf16 only where the hardware has it.

    A ``'bf16'`` request on hardware without native bf16 runs (and is recorded as) fp32, because
    :func:`autocast` is a no-op there.
    """
    return Precision(bf16=resolve_precision(setting, device) and bf16_available(device), channels_last=channels_last)


def hardware(device: torch.device) -> str:
    """What ran the numbers, for results files: bf16 kernels differ between CPU instruction sets and GPUs."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({torch.backends.cpu.get_cpu_capability()}), torch {torch.__version__}"


def reproducing(name: str, device: torch.device) -> Precision:
    """The precision that recomputes numbers recorded under ``name`` (a :attr:`Precision.name`) on ``device``: bf16
    autocast is emulated where the hardware has no native bf16, instead of falling back to fp32 as the policy does
    (fp32 moves a probability by up to ~0.1 against bf16, enough to flip an image near a class boundary)."""
    bf16 = name.startswith("bf16")
    return Precision(bf16=bf16, channels_last="channels_last" in name, emulated=bf16 and not bf16_available(device))
