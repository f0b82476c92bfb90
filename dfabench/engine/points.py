"""Markers a model places where a credit-assignment method may act.

A model is written once and never knows which method trains it. It places:

* ``FeedbackPoint()`` where a feedback signal may enter (after a hidden non-linearity, after a
  Transformer block, after an embedding). Under BP it is the identity.
  A point may carry a ``tag`` so that a model can offer alternative placements (the Transformer's
  "macro" points at block outputs carry the default tag, its extra "micro" points tag "micro"); a
  method acts on the points whose tag it selects (``method_options: {tags: [...]}``) and leaves the
  others as the identity.
* ``FeedbackCut()`` (optional) where a graph-cutting method must also cut without delivering a
  signal (the paper's DeepFM detaches its MLP's input under DFA).
* ``FeedbackOutput(batch_dims=k)`` (optional) on the tensor at which the global error
  ``e = dL/d(output)`` is taken, when that is not simply what ``model(...)`` returns (NeRF's raw
  (rgb, sigma) before volume rendering, a GAE's node embeddings before the decoder). ``batch_dims``
  says how many leading dimensions index examples: 1 for (batch, out), 2 for (batch, time, vocab).

Both delegate to a router that the method attaches (see ``dfabench.engine.router``). With no router
attached both are the identity, so a model with markers runs as a plain PyTorch model.
"""
from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

DEFAULT_GROUP = "default"


class _Marker(nn.Module):
    def __init__(self, group: str = DEFAULT_GROUP):
        super().__init__()
        self.group = group
        # A plain attribute, not a submodule: the router must not appear in the state dict.
        object.__setattr__(self, "_router", None)

    def attach(self, router) -> None:
        object.__setattr__(self, "_router", router)


DEFAULT_TAG = "default"


class PointOptions(BaseModel):
    """Options every method has: which tagged feedback points it acts on (others are identity)."""

    model_config = ConfigDict(extra="forbid")

    tags: list[str] = [DEFAULT_TAG]


class FeedbackPoint(_Marker):
    """Where a method may cut the graph and inject a feedback signal. Identity under BP."""

    def __init__(self, group: str = DEFAULT_GROUP, tag: str = DEFAULT_TAG):
        super().__init__(group)
        self.tag = tag

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        router = self._router
        return x if router is None else router.at_point(self, x)

    def extra_repr(self) -> str:
        return f"group={self.group!r}, tag={self.tag!r}"


class FeedbackOutput(_Marker):
    """Where the global error is taken. Identity under BP."""

    def __init__(self, batch_dims: int = 1, group: str = DEFAULT_GROUP):
        super().__init__(group)
        if batch_dims < 1:
            raise ValueError("batch_dims must be >= 1")
        self.batch_dims = batch_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        router = self._router
        return x if router is None else router.at_output(self, x)

    def extra_repr(self) -> str:
        return f"batch_dims={self.batch_dims}, group={self.group!r}"


class FeedbackCut(_Marker):
    """Where methods that cut the graph (dfa, shallow) also cut, without delivering a signal there.

    Identity under BP. The paper's DeepFM detaches the MLP's input under DFA, so that the shared
    embeddings learn through the FM part only and not from the MLP's feedback."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        router = self._router
        return x if router is None else router.at_cut(self, x)


def feedback_cuts(model: nn.Module) -> list[FeedbackCut]:
    return [m for m in model.modules() if isinstance(m, FeedbackCut)]


def feedback_points(model: nn.Module) -> list[FeedbackPoint]:
    return [m for m in model.modules() if isinstance(m, FeedbackPoint)]


def feedback_outputs(model: nn.Module) -> list[FeedbackOutput]:
    return [m for m in model.modules() if isinstance(m, FeedbackOutput)]


def probe_forward(model: nn.Module, forward):
    """``forward()`` once in eval mode without autograd, the model's training flag restored after:
    how the engine discovers a model's points and shapes, and how its architecture is read."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return forward()
    finally:
        model.train(was_training)
