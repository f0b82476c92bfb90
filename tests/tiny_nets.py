"""The tiny network and float64 setting shared by the tests of the methods' mathematics."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from dfabench.engine import FeedbackPoint


@pytest.fixture
def double_precision():
    # exact comparisons on tiny networks; restored so other test modules keep float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def tiny_mlp(seed: int = 0) -> nn.Sequential:
    """5 -> 4 -> 3 -> 2 with tanh and a feedback point after each hidden activation."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(5, 4), nn.Tanh(), FeedbackPoint(),
        nn.Linear(4, 3), nn.Tanh(), FeedbackPoint(),
        nn.Linear(3, 2),
    )


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(7, 5, generator=g, dtype=torch.float64), torch.randn(7, 2, generator=g, dtype=torch.float64)
