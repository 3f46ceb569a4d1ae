"""Projection head for joint-embedding objectives (SimCLR's g(.): MLP, BN, ReLU)."""

from __future__ import annotations

from torch import Tensor, nn


class ProjectionHead(nn.Module):
    """``(B, D) -> (B, out_dim)``: Linear-BN-ReLU-Linear (Chen et al., 2020)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, out_dim: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
