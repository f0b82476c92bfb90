"""The pipelined BP and DFA steps across two gloo processes give the single-process engine's gradients.

Two CPU processes (one per stage), float64, on the MLP (one output group) and on a model with two output
groups whose points alternate between the groups; with one micro-batch and with two (the gradients of
the micro-batches must add up to the full batch's). One spawn serves every case, to keep it to seconds.
"""
from __future__ import annotations

import os

import pytest
import torch
import torch.nn.functional as F
from bench_cli import assert_refused
from torch import nn

from dfabench.distributed import launch
from dfabench.distributed.pipeline import Pipeline
from dfabench.distributed.placement import split_points
from dfabench.engine import FeedbackOutput, FeedbackPoint
from dfabench.methods import create


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), FeedbackPoint(), nn.Linear(8, 8), nn.Tanh(), FeedbackPoint(),
                         nn.Linear(8, 7), nn.Tanh(), FeedbackPoint(), nn.Linear(7, 3))


class TwoHeads(nn.Module):
    """A classification head (group 'a') and a regression head (group 'b'), each with its own output."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 3), nn.Linear(8, 2)
        self.out_a, self.out_b = FeedbackOutput(group="a"), FeedbackOutput(group="b")

    def forward(self, h):
        return self.out_a(self.a(h)), self.out_b(self.b(h))


def two_groups() -> nn.Sequential:
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), FeedbackPoint(group="a"), nn.Linear(8, 5), nn.Tanh(),
                         FeedbackPoint(group="b"), nn.Linear(5, 8), nn.Tanh(), FeedbackPoint(group="a"), TwoHeads())


def mlp_loss(out, y):
    return F.cross_entropy(out, y[:, 0].long())


def groups_loss(out, y):
    return F.cross_entropy(out[0], y[:, 0].long()) + F.mse_loss(out[1], y[:, 1:])


CASES = [  # (name, model, loss, method, options, micro-batches); "dfa-eager": DFA on its eager schedule
    (f"{build.__name__}-{method}{'-per-layer' if options else ''}-m{m}", build, loss, method, options, m)
    for build, loss in ((mlp, mlp_loss), (two_groups, groups_loss))
    for method, options in (("bp", None), ("dfa", None), ("dfa", {"scaling": "per_layer"}), ("dfa-eager", None))
    for m in ((1, 2, 4) if method == "dfa-eager" else (1, 2))
]


def data():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 6, generator=g, dtype=torch.float64)
    y = torch.cat([torch.randint(0, 3, (8, 1), generator=g).double(), torch.randn(8, 2, generator=g, dtype=torch.float64)], 1)
    return x, y


def prepared(build, method_name, options, x):
    torch.manual_seed(0)
    model = build().double()
    method = create(method_name.removesuffix("-eager"), options)
    method.prepare(model, lambda: model(x), seed=5)
    return model, method


def reference(build, loss, method_name, options) -> dict[str, torch.Tensor]:
    """The single-process engine's step on the full batch."""
    x, y = data()
    model, method = prepared(build, method_name, options, x)
    method.backward(model(x), lambda out: loss(out, y))
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def worker(rank, world, folder):
    x, y = data()
    for name, build, loss, method_name, options, m in CASES:
        model, method = prepared(build, method_name, options, x)
        schedule = "eager" if method_name.endswith("-eager") else "gpipe"
        pipe = Pipeline(model, method, x, loss, micro_batches=m, schedule=schedule)
        pipe.step(x, y)
        names = {id(p): n for n, p in model.named_parameters()}
        grads = {names[id(p)]: p.grad for p in pipe.parameters() if p.grad is not None}
        torch.save(grads, os.path.join(folder, f"{name}-{rank}.pt"))


@pytest.fixture(scope="module")
def pipelined(tmp_path_factory):
    folder = tmp_path_factory.mktemp("grads")
    launch.run(worker, 2, str(folder), start="fork")
    return folder


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_pipelined_gradients_equal_the_engine(pipelined, case):
    name, build, loss, method_name, options, _ = case
    want = reference(build, loss, method_name, options)  # the eager schedule: plain dfa's gradients
    got = {}
    for rank in range(2):
        part = torch.load(pipelined / f"{name}-{rank}.pt")
        assert part, f"stage {rank} computed no gradient"
        assert not set(part) & set(got), "two stages hold the same parameter"
        got.update(part)
    assert set(got) == set(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6, msg=f"{name}: {key}")


def test_dfa_is_not_bp_here(pipelined):
    """The comparison can fail: DFA's pipelined gradients differ from BP's below the last stage."""
    dfa, bp = (torch.load(pipelined / f"mlp-{m}-m1-0.pt") for m in ("dfa", "bp"))
    assert any((dfa[k] - bp[k]).abs().max() > 1e-3 for k in dfa)


def test_cuts_sit_after_points_and_balance_parameters():
    model = mlp()
    assert split_points(model, 2) == [6]  # 56+72 | 63+24 parameters: the most even cut after a point
    assert split_points(model, 4) == [3, 6, 9]
    assert split_points(model, 1) == []
    with pytest.raises(ValueError, match="places to cut"):
        split_points(model, 5)


def test_simulation_matches_the_schedules_closed_forms():
    """Equal stages, free links: GPipe BP takes (m + N - 1)(f + b) + u; DFA (m + N - 1) f + m b_dfa + u;
    with m = 1 that is the reviewers' N f + N b against N f + b_dfa; one stage runs everything in turn."""
    from dfabench.distributed.simulate import (
        Block,
        Link,
        even_cuts,
        reviewers,
        step_times,
    )

    f, b, d, u = 1.0, 2.0, 1.5, 0.25
    free = Link(0.0, float("inf"))
    for n in (1, 2, 5):
        blocks = [Block(f, b, d, u, 100)] * n
        for m in (1, 3, 8):
            t = step_times(blocks, even_cuts(n, n), m, free, 40)
            assert t["bp"] == pytest.approx((m + n - 1) * (f + b) + u)
            assert t["dfa"] == pytest.approx((m + n - 1) * f + m * d + u)
        r, t = reviewers(blocks, n), step_times(blocks, even_cuts(n, n), 1, free, 40)
        assert (t["bp"] - u, t["dfa"] - u) == pytest.approx((r["bp"], r["dfa"]))
    # links cost: one hop per stage boundary each way for BP, a broadcast for DFA, two latencies of barrier
    slow = Link(0.5, 100.0)  # a 100-byte activation: 1.5 s a hop; 40 bytes of errors: 0.9 s
    t = step_times([Block(f, b, d, u, 100)] * 2, [1], 1, slow, 40)
    assert t["bp"] == pytest.approx(2 * f + 1.5 + 2 * b + 1.5 + u + 1.0)
    assert t["dfa"] == pytest.approx(2 * f + 1.5 + 0.9 + d + u + 1.0)


@pytest.mark.parametrize("method", ["drtp", "fa", "shallow", "hybrid"])
def test_methods_the_pipeline_does_not_run_are_refused(method):
    x, _ = data()
    model = mlp().double()
    chosen = create(method)
    chosen.prepare(model, lambda: model(x), seed=5)
    with pytest.raises(ValueError, match="the pipeline runs bp and the dfa family"):
        Pipeline(model, chosen, x, mlp_loss, rank=0, world=1)


def test_the_eager_schedule_is_dfas_only():
    x, _ = data()
    model, method = prepared(mlp, "bp", None, x)
    with pytest.raises(ValueError, match="eager for the dfa family"):
        Pipeline(model, method, x, mlp_loss, rank=0, world=1, schedule="eager")


def test_a_batch_that_does_not_split_is_refused():
    x, _ = data()
    model, method = prepared(mlp, "dfa", None, x)
    with pytest.raises(ValueError, match="3 equal micro-batches"):
        Pipeline(model, method, x, mlp_loss, micro_batches=3, rank=0, world=1)


def test_simulated_eager_schedule_fills_the_forward_bubble():
    """Two equal stages, free links, m micro-batches: the last stage's backward follows each forward, so
    it ends at (m + 1) f + m b + ... ; the first stage runs its m forwards, then its backward passes as
    their errors arrive: the step is max((m + 1) f + m b, m f + m b + ...) + u, never above GPipe's DFA."""
    from dfabench.distributed.simulate import Block, Link, step_times

    f, d, u = 1.0, 1.5, 0.25
    free = Link(0.0, float("inf"))
    for m in (1, 2, 4, 8):
        t = step_times([Block(f, 2.0, d, u, 100)] * 2, [1], m, free, 40)
        # last stage: forward j ends at (j + 2) f + j d (its backward of j - 1 delays it); errors then
        last = (m + 1) * f + m * d
        errors = [(j + 2) * f + j * d for j in range(m)]
        first = m * f
        for arrived in errors:
            first = max(first, arrived) + d
        assert t["dfa_eager"] == pytest.approx(max(first, last) + u)
        assert t["dfa_eager"] <= t["dfa"] + 1e-12


@pytest.mark.parametrize("argv, says", [
    (["--stages", "0"], "argument --stages: 0 is below 1"),
    (["--stages", "9"], "--stages 9: a depth-8 MLP can be cut into at most 8 stages"),
    (["--micro-batches", "3"], "--batch 256 does not split into --micro-batches [3]"),
    (["--ethernet", "1,x"], "argument --ethernet: '1,x': give latency_s,bandwidth_bytes_per_s"),
    (["--nvlink", "1e-5,0"], "argument --nvlink: '1e-5,0': latency must be >= 0 and bandwidth > 0"),
    (["--device", "cuda"] if not torch.cuda.is_available() else ["--device", "tpu"],
     "--device cuda: torch sees no CUDA device" if not torch.cuda.is_available() else "--device tpu: use cpu or cuda"),
    (["--out", "{tmp}/missing/unlock.txt"], "--out {tmp}/missing/unlock.txt: folder {tmp}/missing does not exist"),
])
def test_the_unlock_benchmark_refuses_bad_arguments_in_one_line_before_measuring(argv, says, tmp_path, capsys,
                                                                                monkeypatch):
    assert_refused("unlock", "measure", argv, says, tmp_path, capsys, monkeypatch)
