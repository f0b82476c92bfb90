"""The GPipe schedule's step time for BP and DFA, predicted from block times and link figures.

Inputs (``Block``): each block's forward time per micro-batch ``f``, backward time per micro-batch
under BP ``b_bp`` (weight and input gradients) and under DFA ``b_dfa`` (its share of ``e B`` and the
weight gradients only), its optimiser update per step ``u``, and the bytes of the activation it hands
on. A ``Link`` has a latency (s) and a bandwidth (bytes/s); a transfer of n bytes takes
``latency + n / bandwidth``. The schedule is the one ``pipeline.Pipeline`` runs:

* forward: stage k starts micro-batch j when it has finished j-1 and j has arrived from stage k-1;
* BP backward: stage k starts micro-batch j when it has finished its forwards and j-1's backward and
  the gradient of j has arrived from stage k+1 (the last stage starts once its forwards are done);
* DFA backward: the last stage broadcasts every micro-batch's error (a binomial tree:
  ``ceil(log2 N)`` transfers), then every stage runs its m backward passes with no further wait;
* every stage then updates its parameters; the step ends with a barrier (two latencies).

Compute on one stage is taken as serial (one core or one GPU per stage) and a transfer as not
delaying its sender (``isend``). What it leaves out: contention between transfers on one link, the
host time of a transfer (it shows up in the calibration as part of ``f``) and jitter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True)
class Block:
    f: float  # forward, s per micro-batch
    b_bp: float  # BP backward, s per micro-batch
    b_dfa: float  # DFA backward, s per micro-batch
    u: float  # update, s per step
    out_bytes: int  # activation handed to the next block, per micro-batch


@dataclass(frozen=True)
class Link:
    latency: float  # s
    bandwidth: float  # bytes/s

    def time(self, nbytes: float) -> float:
        return self.latency + nbytes / self.bandwidth


def stages_of(blocks: list[Block], cuts: list[int]) -> list[list[Block]]:
    bounds = [0, *cuts, len(blocks)]
    return [blocks[a:b] for a, b in pairwise(bounds)]


def even_cuts(count: int, stages: int) -> list[int]:
    """Cut ``count`` equal blocks into ``stages`` runs as even as whole blocks allow."""
    return [round(count * s / stages) for s in range(1, stages)]


def _forward(f: list[float], hop: list[float], m: int) -> list[list[float]]:
    """When each stage finishes each micro-batch's forward."""
    n = len(f)
    fwd = [[0.0] * m for _ in range(n)]
    for k in range(n):
        for j in range(m):
            ready = max(fwd[k][j - 1] if j else 0.0, fwd[k - 1][j] + hop[k - 1] if k else 0.0)
            fwd[k][j] = ready + f[k]
    return fwd


def step_times(blocks: list[Block], cuts: list[int], micro_batches: int, link: Link,
               error_bytes: int, host: dict[str, float] | None = None) -> dict[str, float]:
    """Predicted step time (s) of BP and DFA on GPipe and of DFA on its eager schedule (keys ``bp``,
    ``dfa``, ``dfa_eager``); ``error_bytes``: one micro-batch's output errors; ``host``: seconds of
    host work per micro-batch per stage that no block time holds, by the same keys (the pipeline's
    bookkeeping, the engine's dispatch; ``benchmarks/unlock.py`` takes it from 1 stage)."""
    host = {"bp": 0.0, "dfa": 0.0, "dfa_eager": 0.0, **(host or {})}
    parts = stages_of(blocks, cuts)
    n, m = len(parts), micro_batches
    f = [sum(b.f for b in p) for p in parts]
    b_bp = [sum(b.b_bp for b in p) for p in parts]
    b_dfa = [sum(b.b_dfa for b in p) for p in parts]
    u = [sum(b.u for b in p) for p in parts]
    hop = [link.time(p[-1].out_bytes) for p in parts] if n > 1 else [0.0]  # stage k -> k+1
    barrier = 2 * link.latency if n > 1 else 0.0

    fwd = _forward([t + host["bp"] for t in f], hop, m)
    bwd = [[0.0] * m for _ in range(n)]
    for k in reversed(range(n)):
        for j in range(m):
            ready = max(bwd[k][j - 1] if j else fwd[k][m - 1], bwd[k + 1][j] + hop[k] if k < n - 1 else 0.0)
            bwd[k][j] = ready + b_bp[k]
    bp = max(bwd[k][m - 1] + u[k] for k in range(n)) + barrier

    fwd = _forward([t + host["dfa"] for t in f], hop, m)
    broadcast = math.ceil(math.log2(n)) * link.time(m * error_bytes) if n > 1 else 0.0
    errors_known = fwd[n - 1][m - 1] + broadcast
    dfa = max(max(fwd[k][m - 1], errors_known) + m * b_dfa[k] + u[k] for k in range(n)) + barrier
    eager = _eager([t + host["dfa_eager"] for t in f], b_dfa, u, hop, m, math.ceil(math.log2(n)) * link.time(error_bytes)
                   if n > 1 else 0.0)
    return {"bp": bp, "dfa": dfa, "dfa_eager": eager + barrier}


def _eager(f, b, u, hop, m, broadcast) -> float:
    """DFA's eager schedule (``Pipeline(schedule="eager")``): the last stage runs each micro-batch's
    backward right after its forward and sends its errors at once; every other stage, before waiting
    for its next activation, runs the backward passes whose errors have arrived, and the rest at the end."""
    n = len(f)
    clock, fwd_end, arrival, done = [0.0] * n, [[0.0] * m for _ in range(n)], [0.0] * m, [0] * n
    for j in range(m):  # micro-batch by micro-batch: everything a decision needs is already known
        for k in range(n):
            if 0 < k < n - 1:  # the first stage never waits for an activation; the last is never behind
                while done[k] < j and arrival[done[k]] <= clock[k]:
                    clock[k] += b[k]
                    done[k] += 1
            start = max(clock[k], fwd_end[k - 1][j] + hop[k - 1] if k else 0.0)
            clock[k] = fwd_end[k][j] = start + f[k]
            if k == n - 1:
                arrival[j] = clock[k] + broadcast
                clock[k] += b[k]
                done[k] += 1
    ends = []
    for k in range(n):
        for i in range(done[k], m):
            clock[k] = max(clock[k], arrival[i]) + b[k]
        ends.append(clock[k] + u[k])
    return max(ends)


def reviewers(blocks: list[Block], stages: int) -> dict[str, float]:
    """The reviewers' model, one micro-batch, free links: N stages forward then N backward (BP) against
    N forward then one backward, all stages at once (DFA); the blocks dealt evenly."""
    f = sum(b.f for b in blocks)
    return {"bp": f + sum(b.b_bp for b in blocks), "dfa": f + sum(b.b_dfa for b in blocks) / stages}


def bubble(stages: int, micro_batches: int) -> float:
    """GPipe's idle fraction of each phase: (N - 1) / (m + N - 1)."""
    return (stages - 1) / (micro_batches + stages - 1)
