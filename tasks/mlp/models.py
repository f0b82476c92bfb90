"""The survey's three-layer MLP, with its switches: activation, normalisation, dropout; and the
output-dimension probe's readout (a binary task read through 1, 2, 10 or 100 outputs)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dfabench.engine import FeedbackPoint

ACTIVATIONS = {"relu": nn.ReLU, "prelu": nn.PReLU, "selu": nn.SELU, "celu": nn.CELU, "gelu": nn.GELU,
               "tanh": nn.Tanh}


class MLP(nn.Module):
    """Linear -> [norm] -> activation -> [dropout] -> FeedbackPoint, per hidden layer; then a linear head.

    The point sits after the non-linearity (and after dropout, so dropped units receive no feedback,
    as under BP), so autograd applies f'(a) locally to the injected signal.
    """

    def __init__(self, in_features: int, hidden: list[int], classes: int, activation: str = "relu",
                 norm: str = "none", dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in hidden:
            layers.append(nn.Linear(width, size))
            if norm == "batch":
                layers.append(nn.BatchNorm1d(size))
            elif norm == "layer":
                layers.append(nn.LayerNorm(size))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            layers.append(FeedbackPoint())
            width = size
        layers.append(nn.Linear(width, classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class BinaryReadout(nn.Module):
    """The output-dimension probe: the binary task "class >= ``split``" read through ``outputs`` outputs.

    One output: one logit under binary cross-entropy. Two: two logits under cross-entropy. More: the
    two logits plus ``outputs - 2`` auxiliary outputs regressed (mean squared error, averaged over
    them: weight 1 in all) onto a fixed random projection of the same binary target. The targets hold
    the same information at every width (the binary label), so what changes is the dimension of the
    error ``e`` and hence the rank of DFA's feedback ``B e``; BP trains the same heads.
    """

    def __init__(self, outputs: int, split: int, projection_seed: int = 0):
        super().__init__()
        if outputs < 1:
            raise ValueError("outputs must be >= 1")
        self.outputs, self.split = outputs, split
        aux = max(outputs - 2, 0)
        # fixed across seeds and methods: the same targets for every run of a width
        projection = torch.randn(2, aux, generator=torch.Generator().manual_seed(projection_seed))
        self.register_buffer("projection", projection, persistent=False)

    def target(self, classes: torch.Tensor) -> torch.Tensor:
        return (classes >= self.split).long()

    def loss(self, output: torch.Tensor, classes: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        y = self.target(classes)
        if self.outputs == 1:
            return F.binary_cross_entropy_with_logits(output[:, 0], y.float(), reduction=reduction)
        loss = F.cross_entropy(output[:, :2], y, reduction=reduction)
        if self.outputs > 2:
            aux = (output[:, 2:] - self.projection[y]).pow(2).mean(dim=1)
            loss = loss + (aux.mean() if reduction == "mean" else aux.sum())
        return loss

    def correct(self, output: torch.Tensor, classes: torch.Tensor) -> int:
        decision = (output[:, 0] > 0).long() if self.outputs == 1 else output[:, :2].argmax(1)
        return int((decision == self.target(classes)).sum())
