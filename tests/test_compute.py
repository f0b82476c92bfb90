"""Compute in the records (FLOPs by phase, the compute curve) and budgeted runs (``--budget``)."""
from __future__ import annotations

import json
import math

import pytest
import torch

from dfabench.cli import main
from dfabench.harness.compute import Meter, budget_lr_factor, counted_step, parse_budget
from dfabench.harness.plan import plan
from dfabench.methods import create
from tiny_nets import tiny_mlp

from test_bad_input import refused

MLP = "mlp/digits/mlp"
B = 7  # batch
LAYERS = [(5, 4), (4, 3), (3, 2)]  # tiny_mlp's Linear layers (in, out)


def _step(name: str, optimizer=torch.optim.SGD):
    torch.manual_seed(0)
    x, y = torch.randn(B, 5), torch.randn(B, 2)
    model = tiny_mlp()
    method = create(name, {})
    method.prepare(model, lambda: model(x), 0)
    opt = optimizer(model.parameters(), lr=0.1)
    return counted_step(model, method, opt, lambda m, b: m(b[0]),
                        lambda out, b: torch.nn.functional.mse_loss(out, b[1]), None, (x, y))[1]


def test_phase_counts_match_a_hand_count_of_the_tiny_mlp():
    weights = sum(i * o for i, o in LAYERS)  # 38 weight elements
    params = weights + sum(o for _, o in LAYERS)  # plus biases
    bp, dfa, shallow = _step("bp"), _step("dfa"), _step("shallow")
    # forward: one 2*B*in*out product per Linear, whatever the method
    assert bp["forward"] == dfa["forward"] == shallow["forward"] == 2 * B * weights
    # BP's backward: every weight gradient, plus the input gradients of every layer but the first
    input_grads = 2 * B * sum(i * o for i, o in LAYERS[1:])
    assert bp["backward"] == 2 * B * weights + input_grads
    # DFA's: no input gradient across the cuts; instead one projection e B of the 2 outputs to the
    # widest point (4), sliced per point
    assert dfa["backward"] == bp["backward"] - input_grads + 2 * B * 2 * 4
    # shallow trains the head only: its weight gradient, and the optimiser updates only it
    assert shallow["backward"] == 2 * B * 3 * 2
    assert bp["optimizer"] == 4 * params and shallow["optimizer"] == 4 * (3 * 2 + 2)
    assert _step("bp", torch.optim.Adam)["optimizer"] == 12 * params


def test_the_meter_counts_each_batch_shape_once_and_adds_it_per_step():
    model, method = tiny_mlp(), create("bp", {})
    method.prepare(model, lambda: model(torch.zeros(2, 5)), 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []
    meter = Meter(lambda batch: calls.append(batch) or torch.tensor(0.0), model, method, opt,
                  lambda m, b: m(b[0]), lambda out, b: torch.nn.functional.mse_loss(out, b[1]), None)
    for n in (7, 7, 3, 7):
        meter((torch.randn(n, 5), torch.randn(n, 2)))
    assert len(calls) == 2  # the first 7-batch and the 3-batch were counted steps; the rest the real step
    per = {n: 2 * n * 38 + 2 * n * (38 + 18) + 4 * 47 for n in (7, 3)}  # forward, backward, SGD
    assert meter.flops == 3 * per[7] + per[3]
    assert sorted(s["steps"] for s in meter.summary()["shapes"]) == [1, 3]


@pytest.mark.parametrize("schedule,torch_scheduler", [
    ("cosine", lambda opt, hp: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.epochs)),
    ("exponential", lambda opt, hp: torch.optim.lr_scheduler.ExponentialLR(opt, gamma=hp.gamma ** (1 / hp.epochs))),
    ("step", lambda opt, hp: torch.optim.lr_scheduler.StepLR(opt, step_size=hp.step_size, gamma=hp.gamma)),
])
def test_a_budget_schedule_at_bps_own_budget_is_bps_epoch_schedule(schedule, torch_scheduler):
    class HP:
        epochs, gamma, step_size, lr = 8, 0.1, 3, 1.0
    HP.schedule = schedule
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=HP.lr)
    sched = torch_scheduler(opt, HP)
    for epoch in range(1, HP.epochs + 1):
        opt.step()
        sched.step()
        assert math.isclose(opt.param_groups[0]["lr"], HP.lr * budget_lr_factor(HP, epoch / HP.epochs),
                            rel_tol=1e-9, abs_tol=1e-12), (schedule, epoch)


@pytest.mark.parametrize("text", ["", "bp=1", "flops", "flops=", "flops=-1", "seconds=0", "flops=nan",
                                  "flops=inf", "time=3", "seconds=abc"])
def test_bad_budgets_are_one_line_and_write_nothing(tmp_path, capsys, text):
    out = tmp_path / "out"
    refused(capsys, ["run", MLP, "--method", "dfa", "--scale", "smoke", "--results", str(out), "--budget", text],
            "--budget", results=out)


def test_good_budgets_parse():
    assert parse_budget("bp").label == "flops=bp" and parse_budget("seconds=bp").value is None
    assert parse_budget("flops=2e9").value == 2e9 and parse_budget("seconds=1.5").kind == "seconds"


def test_a_budget_enters_the_id_and_no_budget_keeps_the_old_one():
    (run,), _ = plan([MLP], ["dfa"], "smoke", [0], check_data=False)
    old = run.id
    run.budget = {"kind": "flops", "value": 1e9, "label": "flops=1e+09"}
    budgeted = run.id
    run.budget = {"kind": "flops", "value": 1e9, "label": "flops=bp", "reference": "abc"}
    assert budgeted != old and run.id == budgeted  # how the value was found is not the run
    run.budget = {"kind": "flops", "value": 2e9, "label": "flops=2e+09"}
    assert run.id not in (old, budgeted)


def _records(folder):
    return [json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*.json"))]


def test_budget_bp_runs_bp_first_and_spends_its_flops(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", MLP, "--method", "bp,dfa,shallow", "--scale", "smoke", "--results", str(out),
                 "--budget", "bp", "--set", "steps_per_epoch=3", "--set", "alignment_every=0"]) == 0
    records = {r["method"]: r for r in _records(out)}
    assert sorted(records) == ["bp", "dfa", "shallow"]  # BP's arm is its one unbudgeted reference run
    bp = records["bp"]
    assert bp["budget"] is None and bp["compute"]["flops"] > 0
    for name in ("dfa", "shallow"):
        r = records[name]
        assert r["budget"]["value"] == bp["compute"]["flops"] and r["budget"]["reference"] == bp["id"]
        assert r["overrides"]["budget"] == "flops=bp"
        step = r["compute"]["step_flops"]
        total = sum(step.values())
        # spent without overspending: one more step would have gone over
        assert bp["compute"]["flops"] - total < r["compute"]["flops"] <= bp["compute"]["flops"]
        # cheaper steps buy more of them: epochs extend past the task's
        assert r["timings"]["steps"] > bp["timings"]["steps"] and len(r["history"]) > len(bp["history"])
        curve = [h["flops"] for h in r["history"]]
        assert curve == sorted(curve) and curve[-1] == r["compute"]["flops"] and "val" in r["history"][-1]
        assert all("train_s" in h and "items" in h for h in r["history"])


def test_budget_bp_refuses_an_old_bp_record_without_flops_before_training(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", MLP, "--method", "bp", "--scale", "smoke", "--results", str(out),
                 "--set", "steps_per_epoch=2"]) == 0
    capsys.readouterr()
    (path,) = (out / "runs").glob("*.json")
    record = json.loads(path.read_text())
    del record["compute"]  # as a record made before compute was counted
    path.write_text(json.dumps(record))
    # seed 1's BP reference is missing: it must not train before seed 0's old record is refused
    refused(capsys, ["run", MLP, "--method", "dfa", "--scale", "smoke", "--results", str(out), "--budget", "bp",
                     "--seeds", "2", "--set", "steps_per_epoch=2"], "no FLOP count")
    assert len(list((out / "runs").glob("*.json"))) == 1


def test_explicit_budgets_stop_at_the_step_they_allow(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", MLP, "--method", "bp", "--scale", "smoke", "--results", str(out),
                 "--set", "steps_per_epoch=2"]) == 0
    (bp,) = _records(out)
    budget = 2.5 * sum(bp["compute"]["step_flops"].values())  # room for 2.5 of BP's steps
    assert main(["run", MLP, "--method", "dfa", "--scale", "smoke", "--results", str(out / "f"),
                 "--set", "steps_per_epoch=1", "--budget", f"flops={budget}"]) == 0
    (dfa,) = _records(out / "f")
    step = sum(dfa["compute"]["step_flops"].values())
    assert dfa["budget"] == {"kind": "flops", "value": budget, "label": f"flops={budget:g}"}
    # as many of DFA's cheaper steps as fit (one per epoch), each epoch evaluated
    assert dfa["compute"]["flops"] <= budget < dfa["compute"]["flops"] + step
    assert dfa["timings"]["steps"] == len(dfa["history"]) == int(budget // step) > 2
    # a FLOP budget is reproducible: `verify` rebuilds the run with its budget and gets the same metrics
    capsys.readouterr()
    assert main(["verify", str(out / "f"), "--sample", "1"]) == 0
    (entry,) = json.loads((out / "f" / "verification.json").read_text())["records"].values()
    assert entry["identical"]
    # a time budget smaller than any step: one step, then the evaluation, then the end
    assert main(["run", MLP, "--method", "dfa", "--scale", "smoke", "--results", str(out / "s"),
                 "--budget", "seconds=1e-9"]) == 0
    (fast,) = _records(out / "s")
    assert fast["timings"]["steps"] == 1 and len(fast["history"]) == 1 and "val" in fast["history"][0]


def test_committed_budgeted_records_rebuild_their_ids_and_their_report():
    """results/budget: every record's id follows from its recorded configuration and budget (verify's
    path), and the committed report is what the records give today."""
    from pathlib import Path

    from dfabench.report.compute import report
    from dfabench.guards.verify import planned_from
    from dfabench.harness.store import iter_records

    folder = Path(__file__).resolve().parent.parent / "results" / "budget"
    records = list(iter_records(folder))
    budgeted = [r for r in records if r.get("budget")]
    assert len(budgeted) >= 40 and {r["domain"] for r in records} == {"mlp", "vision", "ctr", "graph", "lm", "nerf"}
    for r in records[::7] + budgeted[:5]:  # a spread of them: planning costs a task import each
        assert planned_from(r).id == r["id"], r["id"]
    assert report(records) in (folder / "compute" / "README.md").read_text()
