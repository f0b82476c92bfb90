"""The router: what feedback markers do during one forward pass, chosen by the method.

Modes
-----
``identity``  every marker passes its input through (BP). With ``record=True`` the point outputs are
              kept so that alignment can ask autograd for the true dL/dh.
``cut``       every point detaches its input from the graph, so the block above it sees an input that
              does not require grad and autograd computes no dX across the cut (what makes a DFA step
              cheaper than a BP step). With ``record=True`` the graph-carrying input is kept for the
              single backward call that injects ``B e``; without it (shallow) nothing is kept.
              An output marker hands on a detached leaf that requires grad, so ``loss.backward()``
              stops there and leaves ``e = dL/d(output)`` in ``leaf.grad``.
``discover``  identity, noting the feature size of every point and output (used once in prepare).

Markers act only when grad is enabled: evaluation under ``torch.no_grad()`` is a plain forward.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import torch
from torch import nn

from .points import FeedbackCut, FeedbackOutput, FeedbackPoint, feedback_cuts, feedback_outputs, feedback_points


@dataclass
class OutputRecord:
    marker: FeedbackOutput | None
    value: torch.Tensor  # carries the graph down to the last cut
    leaf: torch.Tensor  # what the loss saw; its .grad is e after loss.backward()
    batch_dims: int


@dataclass
class Discovery:
    point_shapes: dict[str, list[tuple[int, ...]]] = field(default_factory=dict)  # group -> shapes
    output_shapes: dict[str, tuple[tuple[int, ...], int]] = field(default_factory=dict)  # (shape, k)


class Router:
    def __init__(self, model: nn.Module, mode: str = "identity", record: bool = False,
                 tags: frozenset[str] | None = None):
        self.points = feedback_points(model)
        self.tags = tags  # None: every point is active; else only points with these tags
        self.outputs = feedback_outputs(model)
        self.cuts = feedback_cuts(model)
        self.mode = mode
        self.record = record
        self.recorded_points: list[tuple[FeedbackPoint, torch.Tensor]] = []
        self.recorded_outputs: list[OutputRecord] = []
        self.discovery = Discovery()
        for marker in [*self.points, *self.outputs, *self.cuts]:
            marker.attach(self)

    def detach_from(self) -> None:
        for marker in [*self.points, *self.outputs, *self.cuts]:
            marker.attach(None)

    def clear(self) -> None:
        self.recorded_points.clear()
        self.recorded_outputs.clear()

    def take(self) -> tuple[list[OutputRecord], list[tuple[FeedbackPoint, torch.Tensor]]]:
        """Hand over what the forward pass recorded and start empty (no copy, unlike list(...) + clear)."""
        outputs, points = self.recorded_outputs, self.recorded_points
        self.recorded_outputs, self.recorded_points = [], []
        return outputs, points

    # -- called by the markers -------------------------------------------------------------
    def at_point(self, point: FeedbackPoint, x: torch.Tensor) -> torch.Tensor:
        if self.tags is not None and point.tag not in self.tags:
            return x
        if self.mode == "discover":
            self.discovery.point_shapes.setdefault(point.group, []).append(tuple(x.shape))
            return x
        if not torch.is_grad_enabled() or not x.requires_grad:
            return x
        if self.record:
            self.recorded_points.append((point, x))
        return x.detach() if self.mode == "cut" else x

    def at_cut(self, marker: FeedbackCut, x: torch.Tensor) -> torch.Tensor:
        return x.detach() if self.mode == "cut" and torch.is_grad_enabled() else x

    def at_output(self, marker: FeedbackOutput, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "discover":
            self.discovery.output_shapes[marker.group] = (tuple(x.shape), marker.batch_dims)
            return x
        if self.mode != "cut" or not self.record or not torch.is_grad_enabled():
            return x
        leaf = x.detach().requires_grad_(True)
        self.recorded_outputs.append(OutputRecord(marker, x, leaf, marker.batch_dims))
        return leaf


def feature_size(shape: tuple[int, ...], batch_dims: int) -> int:
    """Size of one example's features: the product of the dimensions after the batch dimensions."""
    return int(prod(shape[batch_dims:]))


class configured:
    """Temporarily switch a router's mode (used by the alignment probe)."""

    def __init__(self, router: Router, mode: str, record: bool):
        self.router, self.mode, self.record = router, mode, record

    def __enter__(self) -> Router:
        self.saved = (self.router.mode, self.router.record)
        self.router.clear()
        self.router.mode, self.router.record = self.mode, self.record
        return self.router

    def __exit__(self, *exc) -> None:
        self.router.clear()
        self.router.mode, self.router.record = self.saved
