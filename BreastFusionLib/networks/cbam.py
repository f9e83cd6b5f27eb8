"""CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018), 2D.

Channel attention (a shared MLP on the global average- and max-pooled features, summed, sigmoid)
followed by spatial attention (a 7x7 convolution + BN over the channel-wise max and mean, sigmoid).
The spatial gate's sigmoid is its own submodule (``SpatialGate.gate``) so that a forward hook can
read the attention map for heat maps without changing what the network computes.

The max and mean poolings run through ``MaxMeanPool``, whose backward gives exactly autograd's
gradient for ``amax`` (split evenly between tied maxima) and ``mean`` in one pass. Autograd's own
backward of the pair is about 2x slower on CPU in channels_last, and CBAM then costs more than the
convolutions in bf16 training (docs/NETWORKS.md). TorchScript uses the plain operations.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable


class MaxMeanPool(torch.autograd.Function):
    """``(amax(x, dims), mean(x, dims))`` with keepdim, and a single-pass backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        maximum = torch.amax(x, dim=dims, keepdim=True)
        ctx.dims = dims
        ctx.save_for_backward(x, maximum)
        return maximum, torch.mean(x, dim=dims, keepdim=True)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_max: torch.Tensor, grad_mean: torch.Tensor):
        x, maximum = ctx.saved_tensors
        ties = x == maximum
        # Tied maxima share the gradient, as in autograd's amax. Counting on a uint8 view avoids the
        # slow bool -> int64 copy that autograd's amax backward makes.
        count = ties.view(torch.uint8).sum(ctx.dims, keepdim=True, dtype=torch.int32)
        spread = grad_mean * (maximum.numel() / x.numel())  # d mean / dx = 1 / (pooled elements)
        return torch.where(ties, grad_max / count + spread, spread), None


def max_mean(x: torch.Tensor, dims: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and mean of ``x`` over ``dims`` (kept as size-1 dimensions)."""
    if torch.jit.is_scripting():
        return torch.amax(x, dim=dims, keepdim=True), torch.mean(x, dim=dims, keepdim=True)
    return _max_mean_autograd(x, dims)


@torch.jit.unused
def _max_mean_autograd(x: torch.Tensor, dims: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    return MaxMeanPool.apply(x, tuple(dims))


class ChannelGate(nn.Module):
    """Reweights channels with a shared MLP applied to average- and max-pooled descriptors."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maximum, average = max_mean(x, [2, 3])
        weights = torch.sigmoid(self.mlp(average.flatten(1)) + self.mlp(maximum.flatten(1)))
        return x * weights[:, :, None, None]


class SpatialGate(nn.Module):
    """Reweights positions with a 7x7 conv over the channel max and mean maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maximum, average = max_mean(x, [1])
        return x * self.gate(self.bn(self.conv(torch.cat([maximum, average], dim=1))))


class CBAM(nn.Module):
    """Channel gate then spatial gate, as in the official implementation."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.channel_gate = ChannelGate(channels, reduction)
        self.spatial_gate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial_gate(self.channel_gate(x))
