"""The captured training step (harness/capture.py) and the runner's deferred loss check.

Captured on a CPU means the forward compiled by torch.compile (inductor); it must train exactly as the
eager step does, to float32 rounding (inductor fuses the tanh and the bias adds): after 3 SGD steps
every parameter agrees within atol 1e-6, rtol 1e-5 (seen: 1.5e-8).
"""
from __future__ import annotations

import contextlib
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dfabench.cli import main
from dfabench.engine import FeedbackPoint
from dfabench.harness import capture
from dfabench.harness.plan import plan
from dfabench.harness.runner import LOSS_CHECK_EVERY, run_one
from dfabench.methods import create
from dfabench.task import register_task

from test_harness import ToyHParams, ToyTask


def tiny_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), FeedbackPoint(), nn.Linear(16, 16), nn.Tanh(), FeedbackPoint(),
                         nn.Linear(16, 3))


def trained(method_name, captured, steps=3):
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(steps)]
    model = tiny_mlp()
    method = create(method_name)
    method.prepare(model, lambda: model(batches[0][0]), seed=0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    step = capture.training_step(model, method, optimizer, lambda m, b: m(b[0]), lambda out, b: F.cross_entropy(out, b[1]),
                                 None, torch.device("cpu"), captured)
    losses = [step(batch) for batch in batches]
    return [p.detach().clone() for p in model.parameters()], losses, step


@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("clang++") is None, reason="no C++ compiler")
@pytest.mark.parametrize("method_name", ["bp", "dfa"])
def test_captured_and_eager_steps_train_alike(method_name):
    from torch._dynamo.utils import counters

    before = counters["stats"]["unique_graphs"]
    eager, eager_losses, _ = trained(method_name, captured=False)
    compiled, compiled_losses, step = trained(method_name, captured=True)
    assert isinstance(step, capture.CompiledStep)
    assert counters["stats"]["unique_graphs"] > before  # something was really compiled
    for a, b in zip(eager, compiled):
        torch.testing.assert_close(b, a, atol=1e-6, rtol=1e-5)
    assert any(not torch.equal(a, p) for a, p in zip(eager, tiny_mlp().parameters()))  # and it trained
    torch.testing.assert_close(torch.stack(compiled_losses), torch.stack(eager_losses), atol=1e-6, rtol=1e-5)


def test_compile_without_a_compiler_is_one_line_and_exit_2(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    code = main(["run", "toycapture/steps/net", "--method", "dfa", "--scale", "smoke", "--compile",
                 "--results", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("dfabench: error: capture on a CPU compiles the model with torch.compile")
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*.json"))


class StepsHParams(ToyHParams):
    nan_at_step: int | None = None  # the global step (0-based) whose loss is NaN


@register_task
class StepsTask(ToyTask):
    """test_harness's toy regression, with a loss that turns NaN at a chosen step, counted across epochs."""

    domain = "toycapture"
    HParams = StepsHParams
    datasets = {"steps": "y = 2x"}

    def loss(self, output, batch, model, hp):
        loss = ((output - batch[1]) ** 2).mean()
        step = getattr(model, "_calls", 0)
        model._calls = step + 1
        return loss * float("nan") if hp.nan_at_step is not None and step >= hp.nan_at_step else loss


def steps_run(**hp):
    runs, _ = plan(["toycapture/steps/net"], ["dfa"], "smoke", [0],
                   overrides={"epochs": 3, "batch_size": 2, "alignment_every": 0, **hp})
    return runs[0]


def test_a_nan_loss_is_dated_to_its_step_though_checked_in_windows(tmp_path):
    # 32 steps an epoch; the NaN comes at global step 45, epoch 2 step 13, inside a check window
    assert LOSS_CHECK_EVERY > 1 and 45 % LOSS_CHECK_EVERY != 0
    record = run_one(steps_run(nan_at_step=45), tmp_path)
    assert record["status"] == "diverged"
    assert record["error"] == "loss became nan at epoch 2, step 13"
    assert record["timings"]["steps"] == 45  # the steps before the NaN one, as a check at every step counts
    assert [h["epoch"] for h in record["history"]] == [1]


def test_capture_is_a_recorded_hyper_parameter_with_its_own_id():
    eager, captured = steps_run(), steps_run(capture=True)
    assert eager.id != captured.id
    assert "capture" not in eager.recorded_hparams()  # ids made before capture existed are unchanged
    assert captured.recorded_hparams()["capture"] is True and captured.overrides["capture"] is True


class _StandInGraph:
    """torch.cuda's graph API on a CPU, for CudaGraphStep's bookkeeping only: a real capture records the
    step's kernels without running them and a replay runs them again; here the capture block runs once
    (its update is undone like the warm-up's) and a replay re-runs the step on the static batch."""

    def __init__(self):
        self.replay = None  # set by the test to re-run the captured step

    @staticmethod
    def patch(monkeypatch):
        class Stream:
            def __init__(self, *args, **kwargs):
                pass

            def wait_stream(self, other):
                pass

        monkeypatch.setattr(torch.cuda, "Stream", Stream)
        monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: Stream())
        monkeypatch.setattr(torch.cuda, "stream", lambda stream: contextlib.nullcontext())
        monkeypatch.setattr(torch.cuda, "CUDAGraph", _StandInGraph)
        monkeypatch.setattr(torch.cuda, "graph", lambda graph: contextlib.nullcontext())


@pytest.mark.parametrize("method_name, optimizer", [("bp", "adam"), ("dfa", "adam"), ("dfa", "sgd")])
def test_the_cuda_graph_step_follows_the_eager_trajectory(monkeypatch, method_name, optimizer):
    """The warm-up steps before capture train; CudaGraphStep undoes them (parameters restored in place,
    optimiser moments and step counts zeroed), so the captured run's parameters after each step are the
    eager run's, bit for bit; a batch of another shape (an epoch's short last batch) runs eagerly.

    What this can and cannot catch. The graph API is stood in for (no GPU here): a "replay" re-runs the
    eager step on the static batch, so this tests CudaGraphStep's bookkeeping only. It fails when the
    new batch is not copied into the static one, when the warm-up's parameter updates or optimiser
    moments are not undone, or when a batch of another shape is replayed (each broken on purpose: the
    test fails). It cannot catch a fault of the capture itself (a tensor allocated outside the graph's
    pool, a host-side branch or a Python-side value frozen at capture, the loss read from a stale
    buffer): the stand-in's replay executes Python again and would hide all of them. Only a real
    CUDA graph shows those: benchmarks/cuda_check.py runs the captured step on a GPU against eager."""
    from dfabench.harness.optim import build_optimizer
    from dfabench.task import TrainHParams

    _StandInGraph.patch(monkeypatch)
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(8, 6, generator=g), torch.randint(0, 3, (8,), generator=g)) for _ in range(4)]
    batches.append((torch.randn(5, 6, generator=g), torch.randint(0, 3, (5,), generator=g)))  # short last batch
    hp = TrainHParams(optimizer=optimizer, lr=0.05, momentum=0.9, epochs=1, batch_size=8)

    def run(graph: bool):
        model = tiny_mlp()
        method = create(method_name)
        method.prepare(model, lambda: model(batches[0][0]), seed=0)
        opt = build_optimizer(model.parameters(), hp)
        args = (model, method, opt, lambda m, b: m(b[0]), lambda out, b: F.cross_entropy(out, b[1]), 0.5)
        step = capture.CudaGraphStep(*args, torch.device("cpu")) if graph else capture.eager_step(*args)
        if graph:
            recorded = step._capture

            def capture_and_stand_in(batch, signature):
                recorded(batch, signature)
                step.graph.replay = lambda: step.static_loss.copy_(step.eager(step.static_batch))
            step._capture = capture_and_stand_in
        trajectory = []
        for batch in batches:
            step(batch)
            trajectory.append([p.detach().clone() for p in model.parameters()])
        return trajectory

    eager, graph = run(False), run(True)
    start = list(tiny_mlp().parameters())
    assert all(not torch.equal(a, b) for a, b in zip(eager[0], start))  # the first step trained
    for step_eager, step_graph in zip(eager, graph):
        for a, b in zip(step_eager, step_graph):
            assert torch.equal(a, b)
