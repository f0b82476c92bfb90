"""Where a model is cut into pipeline stages: right after a ``FeedbackPoint``, balanced by parameters.

A stage boundary must sit right after a feedback point: under DFA the block below a cut gets its
signal from ``B e`` at that point and needs no input gradient from the stage above, and the tensor
sent to the next stage is the point's (detached) output. Parameter count stands in for a block's cost
(what a dense block's multiply-adds scale with).
"""
from __future__ import annotations

from functools import cache
from itertools import pairwise

from torch import nn

from ..engine.points import FeedbackPoint


def candidate_cuts(blocks: nn.Sequential) -> list[int]:
    """Indices ``i`` such that a stage may end before ``blocks[i]``: those right after a feedback point."""
    return [i + 1 for i, block in enumerate(blocks) if isinstance(block, FeedbackPoint) and i + 1 < len(blocks)]


def split_points(blocks: nn.Sequential, stages: int) -> list[int]:
    """The ``stages - 1`` cut indices that minimise the largest stage's parameter count."""
    if not isinstance(blocks, nn.Sequential):
        raise TypeError("a pipeline is cut from an nn.Sequential of blocks")
    cuts = candidate_cuts(blocks)
    if stages < 1 or stages - 1 > len(cuts):
        raise ValueError(f"{stages} stages need {stages - 1} cuts; the model has {len(cuts)} places to cut "
                         "(right after a FeedbackPoint)")
    sizes = [sum(p.numel() for p in block.parameters()) for block in blocks]
    prefix = [0]
    for size in sizes:
        prefix.append(prefix[-1] + size)
    ends = [*cuts, len(blocks)]

    @cache
    def best(start: int, left: int) -> tuple[int, tuple[int, ...]]:
        """(largest stage, cuts) for blocks[start:] in ``left`` stages."""
        if left == 1:
            return prefix[-1] - prefix[start], ()
        options = []
        for end in ends[:-1]:
            if end <= start:
                continue
            worst, rest = best(end, left - 1)
            if worst < 0:
                continue
            options.append((max(prefix[end] - prefix[start], worst), (end, *rest)))
        return min(options) if options else (-1, ())

    worst, chosen = best(0, stages)
    if worst < 0:  # pragma: no cover - guarded by the count check above
        raise ValueError(f"cannot cut the model into {stages} stages")
    return list(chosen)


def stage_slices(length: int, cuts: list[int]) -> list[slice]:
    bounds = [0, *cuts, length]
    return [slice(a, b) for a, b in pairwise(bounds)]
