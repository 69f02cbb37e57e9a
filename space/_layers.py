"""Small layers the particles are made of. Classes hold parts and run forward; no arithmetic."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class TemporalShift(nn.Module):
    """Move groups of channels along time, zero-filling the frames they leave (TSM).

    For each offset ``d`` in ``1..reach`` one group of ``fold`` channels is
    shifted ``d`` frames back and one ``d`` frames forward; the remaining
    channels pass unchanged. Costs no multiply-adds.
    """

    def __init__(self, *, fold: int, reach: int) -> None:
        super().__init__()
        self.fold = fold
        self.reach = reach

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = []
        c = 0
        frames = x.shape[2]
        for d in range(1, self.reach + 1):
            fill = min(d, frames)  # a clip shorter than the shift is all zeros
            ahead = x[:, c : c + self.fold, d:]  # frame t sees frame t + d
            pieces.append(F.pad(ahead, (0, 0, 0, 0, 0, fill)))
            c += self.fold
            behind = x[:, c : c + self.fold, : frames - fill]  # frame t sees frame t - d
            pieces.append(F.pad(behind, (0, 0, 0, 0, fill, 0)))
            c += self.fold
        pieces.append(x[:, c:])
        return torch.cat(pieces, dim=1)

    def extra_repr(self) -> str:
        return f"fold={self.fold}, reach={self.reach}"


class ConvGRU(nn.Module):
    """A convolutional GRU over the frames of a clip; returns every frame's hidden state (T preserved).

    ``*_x`` convs see the input ``x`` (all frames in one call), ``*_h`` convs the
    previous hidden state (one frame per call); ``h_0 = 0``::

        z_t = sigmoid(update_x(x)_t + update_h(h_{t-1}))
        r_t = sigmoid(reset_x(x)_t + reset_h(h_{t-1}))
        n_t = tanh(candidate_x(x)_t + candidate_h(r_t * h_{t-1}))
        h_t = (1 - z_t) * h_{t-1} + z_t * n_t
    """

    def __init__(self, *, update_x: nn.Module, reset_x: nn.Module, candidate_x: nn.Module, update_h: nn.Module, reset_h: nn.Module, candidate_h: nn.Module) -> None:
        super().__init__()
        self.update_x = update_x
        self.reset_x = reset_x
        self.candidate_x = candidate_x
        self.update_h = update_h
        self.reset_h = reset_h
        self.candidate_h = candidate_h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Frames are taken with select and joined with stack (not slices and cat): torch-pruning reads
        # those as channel operations, select and stack as element-wise ones, which they are for channels.
        zx, rx, nx = self.update_x(x), self.reset_x(x), self.candidate_x(x)
        n_batch, channels, frames, height, width = zx.shape
        h = zx.new_zeros((n_batch, channels, 1, height, width))
        states = []
        for t in range(frames):
            z = torch.sigmoid(zx.select(2, t).unsqueeze(2) + self.update_h(h))
            r = torch.sigmoid(rx.select(2, t).unsqueeze(2) + self.reset_h(h))
            n = torch.tanh(nx.select(2, t).unsqueeze(2) + self.candidate_h(r * h))
            h = h + z * (n - h)
            states.append(h.select(2, 0))
        return torch.stack(states, dim=2)


class SqueezeExcite(nn.Module):
    """Channel gating from the clip-wide mean: pool -> 1x1x1 -> ReLU -> 1x1x1 -> sigmoid -> scale."""

    def __init__(self, *, channels: int, squeezed: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.reduce = nn.Conv3d(channels, squeezed, kernel_size=1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Conv3d(squeezed, channels, kernel_size=1, bias=True)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class ParallelSum(nn.Module):
    """``spatial(x) + temporal(x)``: two branches of the same input, summed (P3D-B)."""

    def __init__(self, *, spatial: nn.Module, temporal: nn.Module) -> None:
        super().__init__()
        self.spatial = spatial
        self.temporal = temporal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(x) + self.temporal(x)


class ParallelConcat(nn.Module):
    """``cat([branch(x) for branch in branches], dim=1)``: parallel branches of the same input, stacked on channels (Inception)."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


class ParticleBlock(nn.Module):
    """``adapter(post(branch(x) + shortcut(x)))``; ``shortcut`` and ``post`` may be absent.

    ``adapter`` is an identity (no parameters, so the state_dict is the
    block's own) until ``space.add_adapters`` puts an ``Adapter`` there.
    """

    def __init__(self, *, branch: nn.Module, shortcut: nn.Module | None, post: nn.Module | None, out_channels: int | None = None) -> None:
        super().__init__()
        self.out_channels = out_channels  # the block's output width, when the builder states it (a plain int: no state_dict entry)
        self.branch = branch
        self.shortcut = shortcut
        self.post = post if post is not None else nn.Identity()
        self.adapter: nn.Module = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.branch(x)
        if self.shortcut is not None:
            y = y + self.shortcut(x)
        return self.adapter(self.post(y))


class Adapter(nn.Module):
    """Bottleneck adapter with a residual: ``x + up(act(down(x)))``, 1x1x1 convs with biases::

        x -> 1x1x1 conv(C->hidden) -> act -> 1x1x1 conv(hidden->C) --(+)-->
        x ---------------------------------------------------------'

    ``up`` starts at zero (weight and bias), so a new adapter is the identity
    and a network with fresh adapters computes what it computed without them.
    """

    def __init__(self, *, down: nn.Conv3d, act: nn.Module, up: nn.Conv3d) -> None:
        super().__init__()
        self.down = down
        self.act = act
        self.up = up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


class ParticleNet(nn.Module):
    """stem -> stages -> pooled linear head. Input (N, C, T, H, W), output (N, classes) logits."""

    def __init__(self, *, stem: nn.Module, stages: nn.Sequential, head: nn.Module) -> None:
        super().__init__()
        self.stem = stem
        self.stages = stages
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stages(self.stem(x)))
