"""Fixed random feedback matrices, one per output group, stored as buffers in the model.

One matrix ``B`` of shape (output features x largest feedback point) is shared by all points of a
group; point ``i`` with ``l_i`` features uses the first ``l_i`` columns (TinyDFA's layout). Two
scaling rules are offered:

``global``     TinyDFA: ``B = U / sqrt(l_max)``; every point uses ``B[:, :l_i]`` as it is.
``per_layer``  the survey's rule: ``B = U / sqrt(l_max * e)`` and ``B_i = sqrt(l_max / l_i) B[:, :l_i]``.

``U`` is uniform in [-1, 1), standard normal, or ``sign`` (binary +-1, dfa-sign). ``density < 1`` keeps
a random fraction of the entries (dfa-sparse), ``single_connection`` keeps exactly one entry per
point unit (each hidden unit hears one output); kept entries are rescaled by ``1/sqrt(density)`` so
the projection keeps its expected norm. ``per_point`` draws an independent ``(out x l_i)`` matrix
for every point instead of slicing the shared one. The matrices are buffers registered on the
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

    distribution: Literal["uniform", "gaussian", "sign"] = "uniform"
    scaling: Literal["global", "per_layer"] = "global"
    # Multiplies every feedback signal; 0 turns DFA into shallow (used to prove the CI gate bites).
    scale: float = 1.0
    # Leading dimensions of the output that index examples, when the model has no FeedbackOutput.
    batch_dims: int = Field(1, ge=1)
    # Fraction of non-zero feedback entries (sparse DFA, Crafton et al. 2019); 1 is dense.
    density: float = Field(1.0, gt=0, le=1)
    # Exactly one non-zero entry per point unit (the extreme of sparse DFA); overrides density.
    single_connection: bool = False
    # An independent matrix per feedback point instead of slices of one shared matrix.
    per_point: bool = False


def draw_matrix(out_features: int, max_point: int, options: FeedbackOptions, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (out_features, max_point)
    if options.distribution == "uniform":
        u = torch.rand(shape, generator=generator, dtype=torch.float32) * 2 - 1
    elif options.distribution == "gaussian":
        u = torch.randn(shape, generator=generator, dtype=torch.float32)
    else:  # binary +-1
        u = torch.randint(0, 2, shape, generator=generator).to(torch.float32) * 2 - 1
    u = _sparsify(u, options, generator)
    if options.scaling == "global":
        return u / math.sqrt(max_point)
    return u / math.sqrt(max_point * out_features)


def _sparsify(u: torch.Tensor, options: FeedbackOptions, generator: torch.Generator) -> torch.Tensor:
    """Zero all but a random subset of entries; rescale the rest so E||e B||^2 is unchanged."""
    out_features, columns = u.shape
    if options.single_connection:
        rows = torch.randint(0, out_features, (columns,), generator=generator)
        mask = torch.zeros_like(u)
        mask[rows, torch.arange(columns)] = 1.0
        return u * mask * math.sqrt(out_features)
    if options.density >= 1.0:
        return u
    mask = (torch.rand(u.shape, generator=generator) < options.density).to(u.dtype)
    return u * mask / math.sqrt(options.density)


def point_scale(size: int, max_point: int, options: FeedbackOptions) -> float:
    base = options.scale
    if options.scaling == "per_layer":
        base *= math.sqrt(max_point / size)
    return base


class FeedbackMatrices:
    """One buffer per output group, registered on the model itself as ``dfabench_feedback_<group>``
    (with ``per_point``: one per point, ``dfabench_feedback_<group>_<i>`` for the i-th point reached).

    Buffers on the model (not a submodule, which would break ``nn.Sequential``) are saved and
    restored with ``model.state_dict()`` and moved by ``model.to(device)``.
    """

    def __init__(self, model: nn.Module, shapes: dict[str, tuple[int, int]], options: FeedbackOptions,
                 seed: int, device: torch.device, point_sizes: dict[str, list[int]] | None = None):
        """``point_sizes`` (group -> feature size of each point, in call order) is needed for per_point."""
        self.model = model
        # B follows the model's dtype (a float64 or bfloat16 model projects in its own precision); it is
        # drawn in float32 first, so the same seed gives the same matrix whatever the dtype.
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        for index, (group, (out_features, max_point)) in enumerate(sorted(shapes.items())):
            if options.per_point:
                for i, size in enumerate((point_sizes or {})[group]):
                    # seeds of different groups never collide: groups are 10_007 apart
                    matrix = draw_matrix(out_features, size, options, seed + 10_007 * index + 1 + i).to(device, dtype)
                    model.register_buffer(f"{FEEDBACK_PREFIX}{group}_{i}", matrix)
            else:
                matrix = draw_matrix(out_features, max_point, options, seed + index).to(device, dtype)
                model.register_buffer(f"{FEEDBACK_PREFIX}{group}", matrix)

    def matrix(self, group: str) -> torch.Tensor:
        return getattr(self.model, f"{FEEDBACK_PREFIX}{group}")

    def point_matrix(self, group: str, index: int) -> torch.Tensor:
        name = f"{FEEDBACK_PREFIX}{group}_{index}"
        if not hasattr(self.model, name):
            raise RuntimeError(f"no per-point feedback matrix for point {index} of group {group!r} "
                               "(the forward reached more points than at prepare)")
        return getattr(self.model, name)
