"""CBAM: Convolutional Block Attention Module (Woo et al., ECCV 2018), 2D.

Channel attention (a shared MLP on the global average- and max-pooled features, summed, sigmoid)
followed by spatial attention (a 7x7 convolution + BN over the channel-wise max and mean, sigmoid).
The spatial gate's sigmoid is its own submodule (``SpatialGate.gate``) so that a forward hook can
read the attention map for heat maps without changing what the network computes.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelGate(nn.Module):
    """Reweights channels with a shared MLP applied to average- and max-pooled descriptors."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        average = self.mlp(torch.mean(x, dim=(2, 3)))
        maximum = self.mlp(torch.amax(x, dim=(2, 3)))
        return x * torch.sigmoid(average + maximum)[:, :, None, None]


class SpatialGate(nn.Module):
    """Reweights positions with a 7x7 conv over the channel max and mean maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([torch.amax(x, dim=1, keepdim=True), torch.mean(x, dim=1, keepdim=True)], dim=1)
        return x * self.gate(self.bn(self.conv(pooled)))


class CBAM(nn.Module):
    """Channel gate then spatial gate, as in the official implementation."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.channel_gate = ChannelGate(channels, reduction)
        self.spatial_gate = SpatialGate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial_gate(self.channel_gate(x))
