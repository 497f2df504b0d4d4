"""Projectors and the L1-regression action head of OpenVLA-OFT.

Attribute names equal the released state-dict keys (``projector.fc1``,
``proprio_projector--*.pt``: ``fc1``/``fc2``, ``action_head--*.pt``: ``model.*``).
"""
from __future__ import annotations

import torch
from torch import nn


class FusedProjector(nn.Module):
    """Fused-backbone patch projector: D -> 4D -> llm -> llm with GELUs."""

    def __init__(self, vision_dim: int, llm_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(vision_dim, 4 * vision_dim)
        self.fc2 = nn.Linear(4 * vision_dim, llm_dim)
        self.fc3 = nn.Linear(llm_dim, llm_dim)
        self.act_fn1 = nn.GELU()
        self.act_fn2 = nn.GELU()

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act_fn2(self.fc2(self.act_fn1(self.fc1(patches)))))


class ProprioProjector(nn.Module):
    """Normalised proprio state (B, proprio_dim) -> one LLM token (B, llm_dim)."""

    def __init__(self, llm_dim: int, proprio_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(proprio_dim, llm_dim)
        self.fc2 = nn.Linear(llm_dim, llm_dim)
        self.act_fn1 = nn.GELU()

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act_fn1(self.fc1(proprio)))


class MLPResNetBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.ffn = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ffn(x)


class MLPResNet(nn.Module):
    def __init__(self, num_blocks: int, input_dim: int, hidden_dim: int, output_dim: int):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(input_dim)
        self.fc1 = nn.Linear(input_dim, hidden_dim)
        self.relu = nn.ReLU()
        self.mlp_resnet_blocks = nn.ModuleList(
            MLPResNetBlock(hidden_dim) for _ in range(num_blocks))
        self.layer_norm2 = nn.LayerNorm(hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.fc1(self.layer_norm1(x)))
        for block in self.mlp_resnet_blocks:
            x = block(x)
        return self.fc2(self.layer_norm2(x))


class L1RegressionActionHead(nn.Module):
    """Action-slot hidden states (B, chunk * action_dim, llm) -> actions (B, chunk, action_dim).

    The hidden states of one future step's action_dim slots are concatenated and mapped to
    that step's action by a 2-block MLP ResNet.
    """

    def __init__(self, llm_dim: int, hidden_dim: int, action_dim: int, chunk: int) -> None:
        super().__init__()
        self.action_dim, self.chunk = action_dim, chunk
        self.model = MLPResNet(2, llm_dim * action_dim, hidden_dim, action_dim)

    def forward(self, action_hidden: torch.Tensor) -> torch.Tensor:
        b = action_hidden.shape[0]
        return self.model(action_hidden.reshape(b, self.chunk, -1))  # (B, chunk, action_dim)
