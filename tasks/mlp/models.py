"""The survey's three-layer MLP, with its switches: activation, normalisation, dropout."""
from __future__ import annotations

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
