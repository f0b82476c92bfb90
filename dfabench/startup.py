"""A command's start without Python's cyclic garbage collector.

Importing torch, the harness and ``torch._dynamo`` (which ``torch.optim`` imports at its first use)
makes hundreds of thousands of long-lived objects, and the collector walks the growing heap again
and again while they are made: 0.3-0.8 s of ``dfabench run``'s start on a 2-core machine in A/B runs,
net of the one full collection that ends the pause (``benchmarks/cli_start.py``,
results/bench/cli-start-2core.txt). Nothing made while importing is garbage worth collecting early,
so ``run`` pauses the collector at its start, and ``resume`` collects once and turns it back on when
the first run's training loop is about to begin; later calls do nothing.
"""
from __future__ import annotations

import gc

_paused = False


def pause() -> None:
    """Turn the collector off, unless it already is (then ``resume`` leaves it off)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """End a ``pause``: one full collection, then the collector on again."""
    global _paused
    if _paused:
        _paused = False
        gc.collect()
        gc.enable()
