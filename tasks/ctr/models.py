"""CTR models over categorical fields, with feedback points where the paper puts them (REFERENCE.md).

Every model maps (batch, fields) int indices to one click logit per row. Shared pieces: one embedding
table for all fields (offset per field), a first-order (logistic regression) term, and an MLP whose
hidden activations each carry a feedback point.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dfabench.engine import FeedbackCut, FeedbackPoint


class FieldEmbedding(nn.Module):
    def __init__(self, field_dims: list[int], dim: int):
        super().__init__()
        self.embedding = nn.Embedding(sum(field_dims), dim)
        nn.init.normal_(self.embedding.weight, std=0.01)
        self.register_buffer("offsets", torch.tensor([0, *field_dims[:-1]]).cumsum(0), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.embedding(x + self.offsets)  # (batch, fields, dim)


class FirstOrder(nn.Module):
    """Logistic regression on one-hot fields: a weight per value and a bias."""

    def __init__(self, field_dims: list[int]):
        super().__init__()
        self.weights = FieldEmbedding(field_dims, 1)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weights(x).sum((1, 2)) + self.bias


def fm_interaction(e: torch.Tensor) -> torch.Tensor:
    """Sum over field pairs of <v_i, v_j>: 0.5 * ((sum v)^2 - sum v^2), summed over the dimension."""
    return 0.5 * (e.sum(1).pow(2) - e.pow(2).sum(1)).sum(1)


def mlp(inputs: int, hidden: list[int], dropout: float, out: int | None = 1) -> nn.Sequential:
    """Linear -> ReLU -> FeedbackPoint -> dropout per hidden layer, then an optional output layer."""
    layers: list[nn.Module] = []
    for width in hidden:
        layers += [nn.Linear(inputs, width), nn.ReLU(), FeedbackPoint(), nn.Dropout(dropout)]
        inputs = width
    if out is not None:
        layers.append(nn.Linear(inputs, out))
    return nn.Sequential(*layers)


class LR(nn.Module):
    def __init__(self, field_dims, **_):
        super().__init__()
        self.linear = FirstOrder(field_dims)

    def forward(self, x):
        return self.linear(x)


class FM(nn.Module):
    def __init__(self, field_dims, dim=16, **_):
        super().__init__()
        self.linear, self.embed = FirstOrder(field_dims), FieldEmbedding(field_dims, dim)

    def forward(self, x):
        return self.linear(x) + fm_interaction(self.embed(x))


class DeepFM(nn.Module):
    """FM + MLP on the concatenated embeddings. Under DFA the MLP's input is detached (FeedbackCut),
    as in the paper: the embeddings learn through the FM part only."""

    def __init__(self, field_dims, dim=16, hidden=(400, 400, 400), dropout=0.5, **_):
        super().__init__()
        self.linear, self.embed = FirstOrder(field_dims), FieldEmbedding(field_dims, dim)
        self.cut = FeedbackCut()
        self.mlp = mlp(len(field_dims) * dim, list(hidden), dropout)

    def forward(self, x):
        e = self.embed(x)
        return self.linear(x) + fm_interaction(e) + self.mlp(self.cut(e.flatten(1))).squeeze(1)


class CrossLayer(nn.Module):
    """DCN: x_{l+1} = x0 * (x_l . w) + b + x_l; DCNv2 (full=True): x0 * (W x_l + b) + x_l."""

    def __init__(self, width: int, full: bool):
        super().__init__()
        self.full = full
        self.weight = nn.Linear(width, width if full else 1, bias=False)
        nn.init.normal_(self.weight.weight, std=width ** -0.5)
        self.bias = nn.Parameter(torch.zeros(width))

    def forward(self, x0, x):
        return x0 * (self.weight(x) + (self.bias if self.full else 0)) + (0 if self.full else self.bias) + x


class DCN(nn.Module):
    """Cross network and MLP in parallel on the embeddings, stacked into the output layer. Points on
    the embeddings, after every cross layer, every MLP layer, and on the stack (the paper's DFA DCN)."""

    def __init__(self, field_dims, dim=16, hidden=(1024, 1024), cross_layers=3, dropout=0.0, full=False, **_):
        super().__init__()
        width = len(field_dims) * dim
        self.embed, self.embed_point = FieldEmbedding(field_dims, dim), FeedbackPoint()
        self.cross = nn.ModuleList(CrossLayer(width, full) for _ in range(cross_layers))
        self.cross_points = nn.ModuleList(FeedbackPoint() for _ in range(cross_layers))
        self.mlp = mlp(width, list(hidden), dropout, out=None)
        self.stack_point = FeedbackPoint()
        self.out = nn.Linear(width + hidden[-1], 1)

    def forward(self, x):
        x0 = self.embed_point(self.embed(x).flatten(1))
        h = x0
        for layer, point in zip(self.cross, self.cross_points):
            h = point(layer(x0, h))
        stack = self.stack_point(torch.cat([h, self.mlp(x0)], 1))
        return self.out(stack).squeeze(1)


class AutoInt(nn.Module):
    """Multi-head self-attention over fields (interacting layers with residuals) plus an MLP and the
    first-order term (AutoInt+). Points on the embeddings, after every attention layer, in the MLP."""

    def __init__(self, field_dims, dim=16, heads=2, attention_layers=3, hidden=(400, 400), dropout=0.0, **_):
        super().__init__()
        fields = len(field_dims)
        self.linear, self.embed, self.embed_point = FirstOrder(field_dims), FieldEmbedding(field_dims, dim), FeedbackPoint()
        self.attention = nn.ModuleList(nn.MultiheadAttention(dim, heads, batch_first=True)
                                       for _ in range(attention_layers))
        self.residual = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(attention_layers))
        self.attention_points = nn.ModuleList(FeedbackPoint() for _ in range(attention_layers))
        self.attention_out = nn.Linear(fields * dim, 1)
        self.mlp = mlp(fields * dim, list(hidden), dropout)

    def forward(self, x):
        e = self.embed_point(self.embed(x))
        h = e
        for attention, residual, point in zip(self.attention, self.residual, self.attention_points):
            h = point(F.relu(attention(h, h, h, need_weights=False)[0] + residual(h)))
        return self.linear(x) + self.attention_out(h.flatten(1)).squeeze(1) + self.mlp(e.flatten(1)).squeeze(1)


class AFN(nn.Module):
    """Adaptive factorization network: a logarithmic transformation layer learns arbitrary-order
    cross features, exp(sum_j w_kj log|e_j|), followed by an MLP. Points after the logarithmic layer
    and in the MLP (the paper's DFA AFN)."""

    def __init__(self, field_dims, dim=16, log_neurons=400, hidden=(400, 400, 400), dropout=0.3, **_):
        super().__init__()
        self.linear, self.embed = FirstOrder(field_dims), FieldEmbedding(field_dims, dim)
        self.log_layer = nn.Linear(len(field_dims), log_neurons)
        self.norm = nn.BatchNorm1d(log_neurons * dim)
        self.log_point = FeedbackPoint()
        self.mlp = mlp(log_neurons * dim, list(hidden), dropout)

    def forward(self, x):
        e = self.embed(x).abs().clamp_min(1e-7).log()  # (batch, fields, dim)
        crosses = torch.exp(self.log_layer(e.transpose(1, 2)))  # (batch, dim, log_neurons)
        h = self.log_point(self.norm(crosses.flatten(1)))
        return self.linear(x) + self.mlp(h).squeeze(1)


MODELS = {"lr": LR, "fm": FM, "deepfm": DeepFM, "dcn": DCN, "autoint": AutoInt, "afn": AFN,
          "dcnv2": lambda field_dims, **kw: DCN(field_dims, full=True, **kw)}
