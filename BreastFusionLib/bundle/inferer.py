"""The bundle's inferer: MONAI's ``SimpleInferer``, under bf16 autocast on a CPU with native bf16.

MONAI 1.6's engines implement ``amp`` as ``torch.autocast("cuda")`` plus a CUDA ``GradScaler``
(``monai/engines/trainer.py``, ``evaluator.py``); ``amp_kwargs`` cannot change the device. On a CPU
that autocast disables itself with a warning, so the bundle's ``amp`` switch reaches the CPU
through this inferer instead: the network runs under ``BreastFusionLib.precision.autocast`` (bf16
where the CPU has native bf16, fp32 elsewhere) and its output is returned in fp32, so that the loss,
the softmax and the metrics are computed in fp32 (autocast's own policy for losses). bf16 keeps
fp32's exponent range, so no gradient scaling is needed. On CUDA it is a plain ``SimpleInferer``:
the engines' ``amp`` (fp16 autocast with gradient scaling) does the work there.
"""

from __future__ import annotations

import torch
from monai.inferers import SimpleInferer

from BreastFusionLib.precision import autocast


class AutocastInferer(SimpleInferer):
    """``SimpleInferer``; with ``enabled``, on CPU inputs, under bf16 autocast where the CPU supports it."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__()
        self.enabled = enabled

    def __call__(self, inputs: torch.Tensor, network, *args, **kwargs):
        if not self.enabled or inputs.device.type != "cpu":
            return super().__call__(inputs, network, *args, **kwargs)
        with autocast(inputs.device):
            outputs = super().__call__(inputs, network, *args, **kwargs)
        return outputs.float()
