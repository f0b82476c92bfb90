"""The probes of `dfabench probe`: the output-dimension readout's mathematics, every probe's cells
planned as declared, and a probe README whose table is its records'."""
from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F

from dfabench.cli import main
from dfabench.harness.plan import plan
from dfabench.harness.store import write_record
from dfabench.report.probes import PROBES, probe_records, probe_table, write_readme
from dfabench.tasks.mlp.models import BinaryReadout
from records import valid_record


def test_binary_readout_losses_and_decisions():
    classes = torch.tensor([0, 4, 5, 9, 6, 1])
    target = (classes >= 5).long()
    one = BinaryReadout(1, 5)
    logit = torch.randn(6, 1)
    assert torch.allclose(one.loss(logit, classes), F.binary_cross_entropy_with_logits(logit[:, 0], target.float()))
    assert one.correct(logit, classes) == int(((logit[:, 0] > 0).long() == target).sum())
    two = BinaryReadout(2, 5)
    logits = torch.randn(6, 2)
    assert torch.allclose(two.loss(logits, classes), F.cross_entropy(logits, target))
    wide = BinaryReadout(10, 5)
    out = torch.randn(6, 10)
    aux = (out[:, 2:] - wide.projection[target]).pow(2).mean(dim=1).mean()
    assert torch.allclose(wide.loss(out, classes), F.cross_entropy(out[:, :2], target) + aux)
    # the auxiliary targets are the same for every run: a function of the binary label only
    assert torch.equal(wide.projection, BinaryReadout(10, 5).projection)
    assert wide.projection.shape == (2, 8)
    summed = wide.loss(out, classes, reduction="sum")
    assert torch.allclose(summed, 6 * wide.loss(out, classes))
    assert wide.correct(out, classes) == int((out[:, :2].argmax(1) == target).sum())


@pytest.mark.parametrize("name", sorted(PROBES))
def test_every_probe_plans_its_cells_and_methods(name):
    probe = PROBES[name]
    runs, notes = plan(list(probe.levels), list(probe.methods), "smoke", [0])
    assert not notes  # every method applies to every level
    assert {(r.cell, r.method) for r in runs} == {(c, m) for c in probe.levels for m in probe.methods}


def test_depth_and_output_variants_build_what_they_say():
    runs, _ = plan(["mlp/digits/mlp", "mlp/fashion-mnist/mlp-depth16"], ["bp"], "small", [0])
    assert [len(r.hparams.hidden) for r in runs] == [2, 16]
    run = plan(["mlp/fashion-mnist/mlp-out100"], ["bp"], "smoke", [0])[0][0]
    data = run.task.load_data("digits", run.hparams, 0, "smoke", torch.device("cpu"))  # any images will do
    model = run.task.build_model(run.model, run.hparams, data)
    assert model(data.train[0][:3]).shape == (3, 100)
    assert model.readout.outputs == 100


def test_probe_readme_table_is_the_records(tmp_path):
    probe = PROBES["depth"]
    values = {("mlp", "bp"): [0.90, 0.91, 0.92], ("mlp", "dfa"): [0.88, 0.87, 0.90],
              ("mlp-depth16", "bp"): [0.89, 0.90, 0.91], ("mlp-depth16", "dfa"): [0.80, 0.82, 0.81]}
    for (model, method), accs in values.items():
        for seed, acc in enumerate(accs):
            write_record(tmp_path, valid_record(f"{model}{method}{seed}", domain="mlp", dataset="fashion-mnist",
                                                model=model, method=method, scale="small", seed=seed,
                                                primary_metric="accuracy",
                                                metrics={"val": {"accuracy": acc}, "test": {"accuracy": acc}}))
    table = probe_table(probe, probe_records(probe, tmp_path))
    assert list(table["hidden layers"]) == ["2", "16"]  # the factor's order, not the alphabet's
    gap = statistics.mean(d - b for d, b in zip(values["mlp-depth16", "dfa"], values["mlp-depth16", "bp"]))
    assert table.iloc[1]["dfa−bp"].startswith(f"{gap:+.3g}")
    readme = write_readme(probe, tmp_path).read_text()
    assert "dfabench probe depth" in readme and f"{gap:+.3g}" in readme
    assert main(["probe", "depth", "--results", str(tmp_path), "--no-run"]) == 0
    assert main(["probe", "no-such-probe", "--no-run"]) == 2


def test_shallow_lands_on_chance_at_16_layers_because_the_fixed_random_features_collapse():
    """The depth probe's shallow control is at chance (10 %) at 16 layers: at PyTorch's default init each
    ReLU layer shrinks the spread between inputs, so the fixed random body hands the trained head
    almost the same vector for every image. Measured on the built models and the probe's records."""
    from pathlib import Path

    from dfabench.harness.store import iter_records

    def spread_over_shared(cell):
        (run,), _ = plan([cell], ["shallow"], "small", [0])
        data = run.task.load_data(run.dataset, run.hparams, 0, run.scale, torch.device("cpu"))
        torch.manual_seed(0)
        net = run.task.build_model(run.model, run.hparams, data).eval()
        head = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
        seen = []
        handle = head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
        with torch.no_grad():
            net(data.train[0][:512])
        handle.remove()
        h = seen[0]
        return float((h - h.mean(0)).norm(dim=1).mean() / h.mean(0).norm())

    assert spread_over_shared("mlp/fashion-mnist/mlp") > 0.5  # 2 layers: inputs stay apart
    assert spread_over_shared("mlp/fashion-mnist/mlp-depth16") < 1e-3  # 16: one vector for all
    shallow16 = [r["metrics"]["test"]["accuracy"] for r in iter_records(Path(__file__).resolve().parents[1]
                                                                     / "results" / "probes" / "depth")
                 if r["model"] == "mlp-depth16" and r["method"] == "shallow"]
    assert len(shallow16) == 3 and all(abs(a - 0.1) < 0.01 for a in shallow16)
