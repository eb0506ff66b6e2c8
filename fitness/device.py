"""Which device to train on: CUDA when present, CPU otherwise, through the same code path."""

from __future__ import annotations

import torch


class DeviceError(ValueError):
    """A device that cannot be used here (unknown, or not present), reported on one line."""


def available_devices() -> list[torch.device]:
    """Every visible CUDA device (``cuda:0`` …), or ``[cpu]`` when there is none.

    A caller with several GPUs runs one evaluator per device (e.g. one Ray actor each).
    """
    if torch.cuda.is_available():
        return [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return [torch.device("cpu")]


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """``None``/``"auto"`` → the first available device; otherwise the named one, checked."""
    if spec is None or spec == "auto":
        return available_devices()[0]
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"bad device {spec!r}: {exc}") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"device {spec!r} requested, but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"device {spec!r}: only {torch.cuda.device_count()} GPU(s) visible")
    elif device.type != "cpu":
        raise DeviceError(f"unsupported device {spec!r} (use cpu or cuda[:N])")
    return device
