"""Several trained classifiers of one modality answering as one network (a cross-validation ensemble).

``EnsembleClassifier`` holds K members (e.g. the models of K cross-validation folds) and each one's
calibration temperature. Its output is the log of the mean of the members' calibrated probabilities,
softmax(logits_k / T_k), so ``softmax(output)`` is that mean: MONAI's evaluators, the bundle's
postprocessing, the inference code and Grad-CAM use it as they use a single classifier.
``record_member_probabilities`` reads each member's calibrated probabilities during a forward pass,
for the members' spread (the ensemble's uncertainty).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


class EnsembleClassifier(nn.Module):
    """K classifiers of one modality: (B, C, H, W) -> log of the mean calibrated probability (B, classes)."""

    def __init__(self, members: Sequence[nn.Module], temperatures: Sequence[float]) -> None:
        super().__init__()
        if not members or len(members) != len(temperatures):
            raise ValueError(f"an ensemble needs one temperature per member, got {len(members)} members "
                             f"and {len(temperatures)} temperatures")
        if not all(t > 0 for t in temperatures):
            raise ValueError(f"temperatures must be > 0, got {list(temperatures)}")
        self.members = nn.ModuleList(members)
        self.register_buffer("temperatures", torch.tensor([float(t) for t in temperatures]))

    def calibrated(self, index: int, logits: torch.Tensor) -> torch.Tensor:
        """Member ``index``'s calibrated probabilities (B, classes) from its ``logits``: softmax(logits / T)."""
        return torch.softmax(logits.float() / self.temperatures[index], dim=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        probabilities = torch.stack([self.calibrated(index, member(image)) for index, member in enumerate(self.members)])
        return probabilities.mean(0).clamp_min(1e-12).log()


@contextmanager
def record_member_probabilities(network: EnsembleClassifier) -> Iterator[list[list[torch.Tensor]]]:
    """While active, ``calls[k]`` lists member k's calibrated probabilities (B, classes), one per forward pass."""
    calls: list[list[torch.Tensor]] = [[] for _ in network.members]
    handles = []
    for index, member in enumerate(network.members):
        def hook(_module, _inputs, output, index=index):
            calls[index].append(network.calibrated(index, output.detach()))

        handles.append(member.register_forward_hook(hook))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()
