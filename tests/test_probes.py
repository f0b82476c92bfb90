"""The probes of `dfabench probe`: the output-dimension readout's mathematics, every probe's cells
planned as declared, and a probe README whose table is its records'."""
from __future__ import annotations

import statistics

import numpy as np
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


def _lm_record(model, method, seed, loss, norm):
    return valid_record(f"{model}{method}{seed}", domain="lm", dataset="kjv", model=model, method=method, scale="small",
                        seed=seed, primary_metric="perplexity", higher_is_better=False,
                        metrics={"val": {"perplexity": 2.0 ** loss}, "test": {"perplexity": 2.0 ** loss, "loss": loss}},
                        extras={"residual_norm_end": norm, "residual_shared_to_spread_end": norm / 100})


def test_norm_site_claims_are_welch_intervals_worded_from_them(tmp_path):
    """The four arms' claims: arm a − arm b of each quantity, scipy's Welch interval, "supported" only
    where it excludes 0; a logits arm's BP is its decoder-input arm's (relabelled, not run twice)."""
    from scipy import stats

    from dfabench.report.probes import effects, probe_runs

    probe = PROBES["norm-site"]
    norms = {"transformer": [15.0, 16.0, 17.0], "transformer-logits": [14.0, 18.0, 16.0],
             "transformer-preln": [9e3, 1.1e4, 1.3e4], "transformer-preln-logits": [10.0, 30.0, 20.0]}
    for model, values in norms.items():
        for seed, norm in enumerate(values):
            write_record(tmp_path, _lm_record(model, "dfa", seed, 5.0 + seed / 10 + (model == "transformer-preln"), norm))
            if "logits" not in model:
                write_record(tmp_path, _lm_record(model, "bp", seed, 4.8 + seed / 20, 12.0))
    records = probe_records(probe, tmp_path)
    assert sum(r["model"] == "transformer-logits" and r["method"] == "bp" for r in records) == 3
    found = {(e["quantity"], e["contrast"]): e for e in effects(probe, records)}
    norm = found[("DFA's residual norm at the end (log10)", "pre-LN − post-LN, error at the decoder input")]
    a, b = np.log10(norms["transformer-preln"]), np.log10(norms["transformer"])
    interval = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert norm["diff"] == pytest.approx(a.mean() - b.mean()) and norm["low"] == pytest.approx(interval.low)
    assert norm["reading"].startswith("supported: higher")
    site = found[("DFA's residual norm at the end (log10)", "logits − decoder input, post-LN")]
    assert site["low"] < 0 < site["high"] and site["reading"].startswith("not supported")
    gap = found[("DFA − BP test loss (nats, paired by seed)", "pre-LN − post-LN, error at the decoder input")]
    assert gap["diff"] == pytest.approx(1.0) and gap["n"] == "3 vs 3"  # the loss gaps paired by seed, then compared
    readme = write_readme(probe, tmp_path).read_text()
    assert "| DFA's residual norm at the end (log10) | pre-LN − post-LN, error at the decoder input | 3 vs 3 |" in readme
    runs, _ = probe_runs(probe, check_data=False)
    assert {(r.cell, r.method) for r in runs if r.method == "bp"} == {
        ("lm/kjv/transformer", "bp"), ("lm/kjv/transformer-preln", "bp")}
    assert {r.hparams.error_at for r in runs if r.cell.endswith("-logits")} == {"logits"}
    assert {(r.hparams.epochs, r.hparams.batch_size, r.hparams.alignment_every) for r in runs} == {(2, 16, 1)}


def test_the_committed_norm_site_probe_says_what_its_intervals_support(monkeypatch):
    """results/probes/norm-site: the README's finding holds on the committed records. Each bound is one
    that the other factor's arms fail: the placement moves DFA's stream norm by more than 10x and its loss
    gap by more than 0.3 nats at both error sites; the error site moves the loss gap in neither placement."""
    from pathlib import Path

    from dfabench.report.probes import Quantity, effects, quantity_values, render_readme

    probe = PROBES["norm-site"]
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the README names its folder relative to the checkout
    folder = Path("results/probes/norm-site")
    records = probe_records(probe, folder)
    assert len({r["id"] for r in records}) == 18 and all(r["status"] == "ok" for r in records)
    found = {(e["quantity"].split(" (")[0], e["contrast"]): e for e in effects(probe, records)}
    norm, gap = "DFA's residual norm at the end", "DFA − BP test loss"
    for site in ("error at the decoder input", "error at the logits"):
        assert found[(norm, f"pre-LN − post-LN, {site}")]["low"] > 1  # more than 10x, interval and all
        assert found[(gap, f"pre-LN − post-LN, {site}")]["low"] > 0.3
    for placement in ("post-LN", "pre-LN"):
        site = found[(gap, f"logits − decoder input, {placement}")]
        assert site["low"] < 0 < site["high"]  # no evidence the error site matters
    floor = 365.0  # the unigram floor of kjv's test split (every record's extras.floors)
    for cell in probe.levels:
        values = quantity_values(records, cell, Quantity("perplexity", "dfa", "perplexity"))
        mean = sum(values) / len(values)
        assert (mean > 0.9 * floor) if "preln" in cell else (mean < 0.6 * floor), cell
    readme = (folder / "README.md").read_text()
    assert "The placement of the LayerNorm causes the collapse; the error site does not." in readme
    assert readme == render_readme(probe, probe_table(probe, records), folder, records)  # rebuilt from the records
