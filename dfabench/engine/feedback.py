"""Fixed random feedback matrices, one per output group, stored as buffers in the model.

One matrix ``B`` of shape (output features x largest feedback point) is shared by all points of a
group; point ``i`` with ``l_i`` features uses the first ``l_i`` columns (TinyDFA's layout). Two
scaling rules are offered:

``global``     TinyDFA: ``B = U / sqrt(l_max)``; every point uses ``B[:, :l_i]`` as it is.
``per_layer``  the survey's rule: ``B = U / sqrt(l_max * e)`` and ``B_i = sqrt(l_max / l_i) B[:, :l_i]``.

``U`` is uniform in [-1, 1) or standard normal. The matrices are buffers registered on the
model, so they are saved and restored with ``model.state_dict()``, and never touched by an optimiser.
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from .points import PointOptions

FEEDBACK_PREFIX = "dfabench_feedback_"


class FeedbackOptions(PointOptions):
    """How the feedback matrix is drawn and scaled. Strict: unknown keys are errors."""

    distribution: Literal["uniform", "gaussian"] = "uniform"
    scaling: Literal["global", "per_layer"] = "global"
    # Multiplies every feedback signal; 0 turns DFA into shallow (used to prove the CI gate bites).
    scale: float = 1.0
    # Leading dimensions of the output that index examples, when the model has no FeedbackOutput.
    batch_dims: int = Field(1, ge=1)


def draw_matrix(out_features: int, max_point: int, options: FeedbackOptions, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (out_features, max_point)
    if options.distribution == "uniform":
        u = torch.rand(shape, generator=generator) * 2 - 1
    else:
        u = torch.randn(shape, generator=generator)
    if options.scaling == "global":
        return u / math.sqrt(max_point)
    return u / math.sqrt(max_point * out_features)


def point_scale(size: int, max_point: int, options: FeedbackOptions) -> float:
    base = options.scale
    if options.scaling == "per_layer":
        base *= math.sqrt(max_point / size)
    return base


class FeedbackMatrices:
    """One buffer per output group, registered on the model itself as ``dfabench_feedback_<group>``.

    Buffers on the model (not a submodule, which would break ``nn.Sequential``) are saved and
    restored with ``model.state_dict()`` and moved by ``model.to(device)``.
    """

    def __init__(self, model: nn.Module, shapes: dict[str, tuple[int, int]], options: FeedbackOptions,
                 seed: int, device: torch.device):
        self.model = model
        for index, (group, (out_features, max_point)) in enumerate(sorted(shapes.items())):
            matrix = draw_matrix(out_features, max_point, options, seed + index).to(device)
            model.register_buffer(f"{FEEDBACK_PREFIX}{group}", matrix)

    def matrix(self, group: str) -> torch.Tensor:
        return getattr(self.model, f"{FEEDBACK_PREFIX}{group}")
