"""Direct random target projection (Frenkel, Lefebvre and Bol 2021).

DRTP is DFA with the target in place of the error: every feedback point receives ``B (-y*)``
instead of ``B e``; the output layer still gets its true gradient. It needs no output error to
reach the hidden layers, so they can be updated before (or without) the forward pass finishing.

The method never sees the labels (the harness hands it only ``loss_fn``), so it recovers the
target from the error. This holds for softmax cross-entropy only:
``e = (softmax(z) - y*) / N`` with ``N`` the number of examples (``reduction='mean'``; ``N = 1``
for ``'sum'``). Then ``y* = softmax(z) - N e``, and the projected quantity is ``-y* / N``, the
target's share of ``e`` (same 1/N scale as DFA's signal). Rows whose error is exactly zero
(``ignore_index`` tokens) may be left out of ``N`` and then get no signal. When the recovered target is not
one-hot (regression, label smoothing, a sigmoid/BCE loss) DRTP raises ``DRTPError`` naming the
assumption, rather than training on a meaningless signal.
"""
from __future__ import annotations

import torch

from ..engine.router import OutputRecord, feature_size
from .dfa import DFA
from .registry import register


class DRTPError(RuntimeError):
    pass


@register
class DRTP(DFA):
    name = "drtp"
    summary = "direct random target projection: B (-one-hot target) to every point (softmax cross-entropy only)"
    tolerance = 1e-3

    def _feedback_error(self, record: OutputRecord, error: torch.Tensor) -> torch.Tensor:
        return -recover_target(record.leaf.detach(), error, record.batch_dims, self.tolerance)


def recover_target(logits: torch.Tensor, error: torch.Tensor, batch_dims: int, tolerance: float) -> torch.Tensor:
    """``y*/N`` from ``e = dL/dz`` of a softmax cross-entropy over the last dims; raises DRTPError otherwise."""
    features = feature_size(tuple(logits.shape), batch_dims)
    z = logits.reshape(-1, features).to(torch.float64)
    e = error.reshape(-1, features).to(torch.float64)
    everyone = torch.ones(len(e), dtype=torch.bool)
    active = e.abs().sum(1) > 0  # ignore_index rows have no error (nor has a float32-exact prediction)
    # N from the error itself: off-target entries are e_j = p_j / N (> 0). Needed when rows inside the
    # mean have an error of exactly zero (a float32-saturated prediction) or outside it (masked rows).
    positive = e > 0
    n_est = int(torch.round(torch.median(torch.softmax(z, dim=1)[positive] / e[positive]))) if positive.any() else 0
    # (rows, N): mean over all rows; mean over the rows with an error (ignore_index); estimated N; sum
    for rows, n in ((everyone, len(e)), (active, int(active.sum())), (active, n_est), (everyone, 1)):
        if n == 0:
            continue
        target = torch.softmax(z[rows], dim=1) - n * e[rows]
        rounded = target.round()
        one_hot = bool((rounded.sum(1) == 1).all()) and bool(((rounded == 0) | (rounded == 1)).all())
        if one_hot and float((target - rounded).abs().max()) < tolerance:
            out = torch.zeros_like(e)
            out[rows] = rounded / n
            return out.reshape(error.shape).to(error.dtype)
    if not bool(active.any()):
        return torch.zeros_like(error)
    raise DRTPError(
        "drtp needs a classification loss that is softmax cross-entropy on the output (mean or sum "
        "reduction, no label smoothing): the target recovered from the output error is not one-hot. "
        "It does not apply to this task's loss.")
