"""Hybrid BP/DFA steps ("HDFA" in the DFA survey, seeds/001): each optimiser step is a BP step with
probability ``bp_probability`` and a DFA step otherwise.

Both kinds of step feed the same optimiser, so its momentum (Adam's moments, SGD's velocity) mixes
the exact gradient with the DFA update: the occasional BP step pulls the running direction towards
the true gradient, which is the remedy the survey describes for convolutions, where DFA alone aligns
poorly. The coin is drawn before each forward pass (the router must know whether to cut) from a
generator seeded by the run seed, so the sequence of BP and DFA steps is reproducible. Alignment
probes measure the DFA step (a BP step is aligned by definition).
"""
from __future__ import annotations

import torch
from pydantic import Field

from ..engine.feedback import FeedbackOptions
from .base import autograd_loss
from .dfa import DFA
from .registry import register


class HybridOptions(FeedbackOptions):
    # Fraction of optimiser steps taken with backpropagation; 0 is DFA, 1 is BP.
    bp_probability: float = Field(0.2, ge=0, le=1)


@register
class Hybrid(DFA):
    name = "hybrid"
    summary = "BP/DFA hybrid (HDFA): a BP step with probability bp_probability (0.2), a DFA step otherwise"
    Options = HybridOptions

    def prepare(self, model, probe_forward, seed):
        super().prepare(model, probe_forward, seed)
        self.coin = torch.Generator().manual_seed(2_000_033 * (seed + 1) + 11)
        self.steps_bp = self.steps_dfa = 0
        self._draw()

    def _draw(self) -> None:
        """Decide the next step's kind and set the router for its forward pass."""
        self.next_is_bp = bool(torch.rand((), generator=self.coin) < self.options.bp_probability)
        self.router.mode = "identity" if self.next_is_bp else "cut"

    def backward(self, output, loss_fn):
        if self.next_is_bp:
            self.router.clear()  # identity mode still records the points: nothing to inject
            loss, _ = autograd_loss(loss_fn(output), None)
            self.steps_bp += 1
        else:
            loss, _ = self._backward(output, loss_fn, None)
            self.steps_dfa += 1
        self._draw()
        return loss.detach()
