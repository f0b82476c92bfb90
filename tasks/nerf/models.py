"""The NeRF MLP (positional encoding, skip connection) and the coarse + fine renderer.

Feedback points sit after every hidden ReLU (group 'coarse' / 'fine'); a FeedbackOutput marks each
net's raw (rays, samples, 4) output, so DFA takes its error at (rgb, sigma) before volume rendering.
"""
from __future__ import annotations

import torch
from torch import nn

from dfabench.engine.points import FeedbackOutput, FeedbackPoint


def encode(x: torch.Tensor, freqs: int) -> torch.Tensor:
    """NeRF positional encoding: x, sin(2^k x), cos(2^k x) for k < freqs."""
    bands = 2.0 ** torch.arange(freqs, dtype=x.dtype, device=x.device)
    angles = x[..., None, :] * bands[:, None]
    return torch.cat([x, angles.sin().flatten(-2), angles.cos().flatten(-2)], -1)


class NeRFMLP(nn.Module):
    """``feature_relu``: the authors' feature layer (lightonai/dfa-scales-to-modern-deep-learning,
    DFAFlexibleNeRFModel): ``relu(fc_feat(h))`` with a feedback point after it, where the default is a
    plain linear map with no point (the records made before this option keep that)."""

    def __init__(self, depth: int, width: int, pos_freqs: int, dir_freqs: int, skip: int | None, group: str,
                 feature_relu: bool = False):
        super().__init__()
        self.pos_freqs, self.dir_freqs, self.skip = pos_freqs, dir_freqs, skip
        pos_dim, dir_dim = 3 + 6 * pos_freqs, 3 + 6 * dir_freqs
        self.layers = nn.ModuleList()
        for i in range(depth):
            fan_in = pos_dim if i == 0 else width + (pos_dim if skip is not None and i == skip else 0)
            self.layers.append(nn.Linear(fan_in, width))
        self.points = nn.ModuleList(FeedbackPoint(group) for _ in range(depth + 1))
        self.sigma = nn.Linear(width, 1)
        self.feature = nn.Linear(width, width)
        self.view = nn.Linear(width + dir_dim, width // 2)
        self.rgb = nn.Linear(width // 2, 3)
        self.out = FeedbackOutput(batch_dims=2, group=group)
        # created last and only when asked: the default model's parameters, points and RNG draws are as before
        self.feature_point = FeedbackPoint(group) if feature_relu else None

    def forward(self, xyz: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """xyz (R, S, 3), dirs (R, 3) -> raw (R, S, 4): rgb logits and sigma pre-activation."""
        p = encode(xyz, self.pos_freqs)
        h = p
        for i, layer in enumerate(self.layers):
            if self.skip is not None and i == self.skip:
                h = torch.cat([h, p], -1)
            h = self.points[i](torch.relu(layer(h)))
        d = encode(dirs, self.dir_freqs)[:, None].expand(*xyz.shape[:2], -1)
        feature = self.feature(h) if self.feature_point is None else self.feature_point(torch.relu(self.feature(h)))
        v = self.points[-1](torch.relu(self.view(torch.cat([feature, d], -1))))
        return self.out(torch.cat([self.rgb(v), self.sigma(h)], -1))


def render(raw: torch.Tensor, t: torch.Tensor, dirs: torch.Tensor, white_bkgd: bool):
    """Volume rendering of raw (R, S, 4) at depths t (R, S): rgb (R, 3) and weights (R, S)."""
    rgb = torch.sigmoid(raw[..., :3])
    # softplus, not relu: a relu here can go dead at init (sigma <= 0 on every sample, zero gradient)
    # and the scene collapses to the background, which we saw on one seed.
    sigma = torch.nn.functional.softplus(raw[..., 3] - 1.0)
    delta = torch.cat([t[:, 1:] - t[:, :-1], torch.full_like(t[:, :1], 1e10)], -1) * dirs.norm(dim=-1, keepdim=True)
    alpha = 1 - torch.exp(-sigma * delta)
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha + 1e-10], -1), -1)[:, :-1]
    weights = alpha * trans
    out = (weights[..., None] * rgb).sum(1)
    if white_bkgd:
        out = out + (1 - weights.sum(-1, keepdim=True))
    return out, weights


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n: int, deterministic: bool) -> torch.Tensor:
    """Inverse-transform samples from the piecewise-constant pdf of the coarse weights."""
    w = weights + 1e-5
    cdf = torch.cumsum(w / w.sum(-1, keepdim=True), -1)
    cdf = torch.cat([torch.zeros_like(cdf[:, :1]), cdf], -1)
    if deterministic:
        u = torch.linspace(0, 1, n, device=bins.device).expand(cdf.shape[0], n).contiguous()
    else:
        u = torch.rand(cdf.shape[0], n, device=bins.device)
    idx = torch.searchsorted(cdf, u, right=True).clamp(1, cdf.shape[-1] - 1)
    lo, hi = cdf.gather(1, idx - 1), cdf.gather(1, idx)
    b_lo, b_hi = bins.gather(1, idx - 1), bins.gather(1, idx)
    frac = ((u - lo) / (hi - lo).clamp_min(1e-5)).clamp(0, 1)
    return b_lo + frac * (b_hi - b_lo)


class NeRF(nn.Module):
    """Coarse + fine NeRF. forward(rays (R, 6), near, far) -> (coarse rgb, fine rgb)."""

    def __init__(self, depth=8, width=256, pos_freqs=10, dir_freqs=4, skip=4, n_coarse=64, n_fine=128,
                 white_bkgd=True, near=2.0, far=6.0, feature_relu=False):
        super().__init__()
        skip = skip if skip is not None and skip < depth else None
        self.coarse = NeRFMLP(depth, width, pos_freqs, dir_freqs, skip, "coarse", feature_relu)
        self.fine = NeRFMLP(depth, width, pos_freqs, dir_freqs, skip, "fine", feature_relu)
        self.n_coarse, self.n_fine, self.white_bkgd, self.near, self.far = n_coarse, n_fine, white_bkgd, near, far

    def forward(self, rays: torch.Tensor):
        o, d = rays[:, :3], rays[:, 3:6]
        steps = torch.linspace(0, 1, self.n_coarse, device=rays.device)
        t = self.near + (self.far - self.near) * steps.expand(len(rays), -1)
        if self.training:  # stratified sampling
            mids = 0.5 * (t[:, 1:] + t[:, :-1])
            lo, hi = torch.cat([t[:, :1], mids], -1), torch.cat([mids, t[:, -1:]], -1)
            t = lo + (hi - lo) * torch.rand_like(t)
        raw_c = self.coarse(o[:, None] + t[..., None] * d[:, None], d)
        rgb_c, w = render(raw_c, t, d, self.white_bkgd)
        if self.n_fine == 0:
            return rgb_c, rgb_c
        mids = 0.5 * (t[:, 1:] + t[:, :-1])
        t_new = sample_pdf(mids, w[:, 1:-1].detach(), self.n_fine, not self.training)
        t_f, _ = torch.sort(torch.cat([t, t_new.detach()], -1), -1)
        raw_f = self.fine(o[:, None] + t_f[..., None] * d[:, None], d)
        rgb_f, _ = render(raw_f, t_f, d, self.white_bkgd)
        return rgb_c, rgb_f
