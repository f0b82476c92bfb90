"""What every credit-assignment method is: a router mode plus a way to turn a loss into gradients."""
from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

from ..catalog import REQUIREMENTS  # noqa: F401  (re-exported: what a method may need)
from ..engine.points import PointOptions
from ..engine.router import Router

LossFn = Callable[[Any], torch.Tensor]
Grads = list[torch.Tensor | None]


class Method:
    """Base class. Subclasses set ``name``, ``router_mode``, ``records`` and implement ``_backward``.

    ``prepare`` attaches the method to a model (once, before the optimiser is built);
    ``backward`` accumulates this method's update into ``.grad`` and returns the detached loss;
    ``gradients`` returns the same update for ``params`` without touching ``.grad`` (alignment).
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    router_mode: ClassVar[str] = "identity"
    records: ClassVar[bool] = False  # whether the router keeps point inputs for the backward pass
    Options: ClassVar[type[BaseModel]] = PointOptions
    # What a task's models must offer for this method to mean something (keys of REQUIREMENTS;
    # mirrored in catalog.METHOD_REQUIREMENTS so that `list` needs no torch):
    # point tags (dfa-micro needs 'micro') or capabilities (fa needs 'layerwise').
    requires_tags: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: dict | None = None):
        self.options = self.Options(**(options or {}))
        self.router: Router | None = None

    def prepare(self, model: nn.Module, probe_forward: Callable[[], Any], seed: int) -> None:
        self.model = model
        self.router = Router(model, self.router_mode, self.records, frozenset(self.options.tags))

    def backward(self, output: Any, loss_fn: LossFn) -> torch.Tensor:
        loss, _ = self._backward(output, loss_fn, None)
        return loss.detach()

    def gradients(self, output: Any, loss_fn: LossFn, params: list[torch.Tensor]) -> tuple[torch.Tensor, Grads]:
        return self._backward(output, loss_fn, params)

    def _backward(self, output: Any, loss_fn: LossFn, params: list[torch.Tensor] | None):
        raise NotImplementedError


def autograd_loss(loss: torch.Tensor, params: list[torch.Tensor] | None) -> tuple[torch.Tensor, Grads | None]:
    """Plain autograd: into .grad when params is None, else returned."""
    if params is None:
        loss.backward()
        return loss, None
    return loss, list(torch.autograd.grad(loss, params, allow_unused=True))
