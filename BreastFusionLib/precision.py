"""Numeric precision: bf16 autocast where the hardware runs it natively, fp32 elsewhere.

On a CPU with bf16 instructions (x86 AVX512_BF16 or AMX_BF16, read at run time from
``torch.cpu.get_capabilities()``), oneDNN runs convolutions and matrix products in bf16 at about
2x the fp32 speed (docs/NETWORKS.md, docs/INFERENCE.md). Without those instructions oneDNN only
emulates bf16, which is slower than fp32, so those CPUs (and any other device) stay in fp32. For
one image smaller than ``BF16_MIN_SIDE`` (the demo's 64 px) bf16 is slower as well: its casts and
layout changes cost more than it saves, so prediction at that size stays in fp32. On CUDA, autocast
uses bf16 where the GPU supports it and fp16 otherwise (not tested on this project's CPU machines).

Autocast keeps the weights in fp32 and runs each operation in the precision PyTorch's autocast
policy gives it. On the demo's models bf16 moved the network's probabilities by at most 0.011
(calibrated: 0.015; ``training/compare_precision.py``), and ``predict_case`` decides answers near
the threshold in fp32.

Force fp32 with ``precision="fp32"`` or, for a whole process (CLI, Slicer worker, bundle), with
the environment variable ``BREASTFUSION_PRECISION=fp32``.
"""

from __future__ import annotations

import contextlib
import os

import torch

from BreastFusionLib.errors import UserInputError

PRECISIONS = ("auto", "fp32")
ENVIRONMENT_VARIABLE = "BREASTFUSION_PRECISION"
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
BF16_MIN_SIDE = 128  # px: one CBAM-ResNet-50 input of 64 px runs 0.7x as fast in bf16, 128 px 1.2x, 300 px 1.9x


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 instructions that oneDNN uses (AVX512_BF16 or AMX_BF16)."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.9
    if capabilities is None or not torch.backends.mkldnn.is_available():
        return False
    found = capabilities()
    return any(bool(found.get(flag)) for flag in BF16_CPU_FLAGS)


def _check(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UserInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def autocast_dtype(device: str | torch.device, precision: str = "auto", image_side: int | None = None) -> torch.dtype | None:
    """The autocast dtype for ``device`` (bf16 / fp16), or None for fp32.

    fp32 when ``precision`` or the ``BREASTFUSION_PRECISION`` environment variable says "fp32", and
    on a CPU for an ``image_side`` (one image's input size, for prediction) below ``BF16_MIN_SIDE``.
    """
    environment = os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower()
    if environment and environment not in PRECISIONS:
        raise UserInputError(f"{ENVIRONMENT_VARIABLE} must be one of {', '.join(PRECISIONS)}, got {environment!r}")
    if _check(precision) == "fp32" or environment == "fp32":
        return None
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16() and (image_side is None or image_side >= BF16_MIN_SIDE):
        return torch.bfloat16
    return None


def mixed_precision_available(device: str | torch.device) -> bool:
    """Whether ``autocast`` would run in reduced precision on ``device`` (the bundle's default ``amp``)."""
    return autocast_dtype(device) is not None


def autocast(device: str | torch.device, precision: str = "auto", image_side: int | None = None) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to ``autocast_dtype(device, precision, image_side)``, or a no-op context for fp32."""
    dtype = autocast_dtype(device, precision, image_side)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)
