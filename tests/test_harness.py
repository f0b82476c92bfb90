"""The harness end to end: records, resume, strict input, divergence, interruption, determinism."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from dfabench.cli import main
from dfabench.engine import FeedbackPoint
from dfabench.harness.plan import plan
from dfabench.harness.runner import run_one
from dfabench.harness.store import iter_records, write_record
from dfabench.task import Metric, Task, TrainHParams, all_tasks, register_task, tensor_batches

from records import valid_record

CONTRACT = ["id", "domain", "dataset", "model", "method", "scale", "seed", "hparams", "status", "metrics",
            "primary_metric", "higher_is_better", "history", "timings", "peak_mem_mb", "n_params", "alignment",
            "provenance"]
MLP_SMOKE = "mlp/digits/mlp"


class ToyHParams(TrainHParams):
    blow_up_at_epoch: int | None = None


@register_task
class ToyTask(Task):
    """A regression task whose validation score follows a fixed script, to test best-point logic."""

    domain = "toy"
    HParams = ToyHParams
    metrics = (Metric("score", True),)
    primary_metric = "score"
    datasets = {"line": "y = 2x"}
    models = {"net": "one hidden layer"}
    val_script = [0.2, 0.9, 0.5, 0.4]

    def load_data(self, dataset, hp, seed, scale, device):
        x = torch.linspace(-1, 1, 64).unsqueeze(1)
        return {"x": x, "y": 2 * x, "evals": 0}

    def build_model(self, model, hp, data):
        return nn.Sequential(nn.Linear(1, 8), nn.Tanh(), FeedbackPoint(), nn.Linear(8, 1))

    def train_batches(self, data, hp, generator):
        return tensor_batches((data["x"], data["y"]), hp.batch_size, generator)

    def loss(self, output, batch, model, hp):
        loss = ((output - batch[1]) ** 2).mean()
        data_epoch = getattr(model, "_epoch", 0)
        if hp.blow_up_at_epoch is not None and data_epoch >= hp.blow_up_at_epoch:
            return loss * float("nan")
        return loss

    def evaluate(self, model, data, split, hp):
        weight = float(model[3].weight.sum())
        if split == "val":
            i = data["evals"]
            data["evals"] += 1
            model._epoch = i + 1
            return {"score": self.val_script[i % len(self.val_script)], "weight": weight}
        return {"score": 0.0, "weight": weight}


def toy_run(**hp):
    runs, _ = plan(["toy/line/net"], ["dfa"], "smoke", [0], overrides={"epochs": 4, "batch_size": 16, **hp})
    return runs[0]


def test_test_metrics_are_taken_at_the_best_validation_point(tmp_path):
    record = run_one(toy_run(), tmp_path)
    assert record["status"] == "ok"
    best = record["metrics"]["val"]
    assert best["score"] == 0.9 and best["epoch"] == 2
    # the test pass saw exactly the weights of epoch 2
    assert record["metrics"]["test"]["weight"] == pytest.approx(record["history"][1]["val"]["weight"])
    assert record["history"][3]["val"]["weight"] != pytest.approx(best["weight"])


def test_divergence_is_recorded_not_raised(tmp_path):
    record = run_one(toy_run(blow_up_at_epoch=2), tmp_path)
    assert record["status"] == "diverged"
    assert "nan" in record["error"]
    json.dumps(record)  # still a valid JSON record


def test_records_follow_the_contract_and_reruns_skip(tmp_path, capsys):
    results = tmp_path / "res"
    assert main(["run", MLP_SMOKE, "--method", "bp,dfa,shallow", "--scale", "smoke", "--seeds", "2",
                 "--results", str(results)]) == 0
    records = list(iter_records(results))
    assert len(records) == 6
    for r in records:
        assert not [k for k in CONTRACT if k not in r]
        assert r["status"] == "ok" and r["primary_metric"] == "accuracy" and r["higher_is_better"] is True
        assert set(r["timings"]) >= {"train_s", "eval_s", "wall_s", "step_ms"}
        assert 0.0 <= r["metrics"]["test"]["accuracy"] <= 1.0
        assert r["history"] and "alignment" in r["history"][-1]
        assert r["provenance"]["data_fingerprint"].startswith("scikit-learn:")
    mtimes = {p: p.stat().st_mtime_ns for p in (results / "runs").glob("*.json")}
    capsys.readouterr()
    assert main(["run", MLP_SMOKE, "--method", "bp,dfa,shallow", "--scale", "smoke", "--seeds", "2",
                 "--results", str(results)]) == 0
    assert "6 already recorded" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in (results / "runs").glob("*.json")} == mtimes


def test_same_seed_gives_identical_metrics(tmp_path):
    runs, _ = plan([MLP_SMOKE], ["dfa"], "smoke", [0])
    a = run_one(runs[0], tmp_path)
    b = run_one(runs[0], tmp_path)
    assert a["metrics"] == b["metrics"]
    assert a["id"] == b["id"]


def test_dfa_beats_shallow_and_ids_differ_by_method(tmp_path):
    runs, _ = plan([MLP_SMOKE], ["dfa", "shallow"], "smoke", [0], overrides={"epochs": 4})
    dfa, shallow = (run_one(r, tmp_path) for r in runs)
    assert dfa["id"] != shallow["id"]
    assert dfa["metrics"]["test"]["accuracy"] > shallow["metrics"]["test"]["accuracy"]


@pytest.mark.parametrize("argv, message", [
    (["run", "mlp/nope/*", "--scale", "smoke"], "matches no cell"),
    (["run", MLP_SMOKE, "--method", "bp,teleport", "--scale", "smoke"], "unknown method 'teleport'"),
    (["run", MLP_SMOKE, "--scale", "huge"], "unknown scale"),
    (["run", MLP_SMOKE, "--scale", "smoke", "--set", "colour=blue"], "colour"),
    (["run", MLP_SMOKE, "--scale", "smoke", "--set", "epochs=many"], "epochs"),
    (["run", MLP_SMOKE, "--scale", "smoke", "--set", "method_options.flavour=1"], "flavour"),
    (["run", MLP_SMOKE, "--seeds", "two"], "invalid int value"),
    (["run", "mlp-only-two-parts", "--scale", "smoke"], "domain/dataset/model"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    results = tmp_path / "res"
    code = exit_code(argv + ["--results", str(results)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and message in err
    assert not results.exists()


def test_bad_config_file_key_is_rejected(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("selectors: ['mlp/digits/mlp']\nscale: smoke\nseedz: 3\n")
    assert main(["run", "--config", str(config), "--results", str(tmp_path / "res")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "seedz" in err
    assert not (tmp_path / "res").exists()


def test_config_file_takes_every_run_option_by_its_command_line_name(tmp_path):
    """`--config` covers every option of `run`: each parser option has a config key of the same name,
    and a file that sets them all (but the executor's cluster) is taken as the command line would be."""
    from dfabench.cli import build_parser
    from dfabench.harness.config import RUN_OPTIONS, run_config

    run = build_parser()._subparsers._group_actions[0].choices["run"]
    options = {a.dest for a in run._actions if a.dest not in ("help", "config")}
    assert options == set(RUN_OPTIONS)
    config = tmp_path / "c.yaml"
    config.write_text("selectors: ['mlp/digits/mlp']\nmethod: bp,dfa\nscale: smoke\nseeds: 2\nresults: r\n"
                      "device: cpu\nset: {epochs: 1}\ncompile: true\nexecutor: ray\naddress: auto\nwandb: true\n")
    got = run_config({name: None for name in RUN_OPTIONS}, str(config))
    assert (got.methods, got.scale, got.seeds, got.results, got.executor, got.address, got.wandb) == \
        (["bp", "dfa"], "smoke", 2, "r", "ray", "auto", True)
    assert got.set == {"epochs": 1, "capture": True}
    # the command line wins over the file
    assert run_config({**{name: None for name in RUN_OPTIONS}, "scale": "small", "set": ["epochs=3"]},
                      str(config)).set == {"epochs": 3, "capture": True}


def test_interrupted_suite_keeps_finished_runs_and_resumes(tmp_path, monkeypatch):
    import dfabench.harness.executor as executor

    results = tmp_path / "res"
    task_class = type(all_tasks()["mlp"])
    real_loss, real_run_one = task_class.loss, executor.run_one
    started = {"runs": 0, "losses_in_third": 0}

    def counting_run_one(*args, **kwargs):
        started["runs"] += 1
        return real_run_one(*args, **kwargs)

    def interrupting_loss(self, *args, **kwargs):
        if started["runs"] == 3:  # Ctrl-C in the middle of the third run
            started["losses_in_third"] += 1
            if started["losses_in_third"] == 5:
                raise KeyboardInterrupt
        return real_loss(self, *args, **kwargs)

    monkeypatch.setattr(executor, "run_one", counting_run_one)
    monkeypatch.setattr(task_class, "loss", interrupting_loss)
    argv = ["run", MLP_SMOKE, "--method", "bp,dfa", "--scale", "smoke", "--seeds", "2", "--results", str(results)]
    assert main(argv) == 130
    files = sorted((results / "runs").iterdir())
    assert len(files) == 2 and all(not p.name.startswith(".tmp") for p in files)
    monkeypatch.setattr(task_class, "loss", real_loss)
    started["runs"] = 10
    assert main(argv) == 0
    assert started["runs"] == 12  # only the two missing runs ran again
    assert len(list(iter_records(results))) == 4


def test_a_half_written_record_is_invisible(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    (runs_dir / ".tmp-abc.json").write_text('{"id": "abc", "stat')  # what a kill mid-write leaves
    write_record(tmp_path, valid_record("x1"))
    assert [r["id"] for r in iter_records(tmp_path)] == ["x1"]


def exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse's own errors
        return stop.code


def test_list_shows_cells_methods_and_scales(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("mlp/fashion-mnist/mlp "))
    assert "methods=bp,dfa,shallow" in line and "scales=smoke,small,paper,gate" in line
    assert "mlp/fashion-mnist/mlp-batchnorm" in out


def test_table_pairs_seeds_and_uses_unbiased_std(tmp_path, capsys):
    import numpy as np

    values = {"bp": [0.90, 0.92, 0.94], "dfa": [0.85, 0.90, 0.86]}
    for method, vals in values.items():
        for seed, v in enumerate(vals):
            write_record(tmp_path, {"id": f"{method}{seed}", "domain": "d", "dataset": "s", "model": "m",
                                    "method": method, "scale": "small", "seed": seed, "status": "ok",
                                    "primary_metric": "acc", "higher_is_better": True,
                                    "metrics": {"test": {"acc": v}}})
    assert main(["table", "--results", str(tmp_path), "--format", "csv"]) == 0
    import io

    import pandas as pd

    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    dfa = frame[frame.method == "dfa"].iloc[0]
    assert dfa["mean"] == pytest.approx(np.mean(values["dfa"]))
    assert dfa["std"] == pytest.approx(np.std(values["dfa"], ddof=1))
    diff = np.array(values["dfa"]) - np.array(values["bp"])
    assert dfa["gap"] == pytest.approx(diff.mean())
    assert dfa["ci95"] == pytest.approx(4.302653 * diff.std(ddof=1) / np.sqrt(3), rel=1e-5)
    assert main(["table", "--results", str(tmp_path), "--format", "md"]) == 0
    markdown = capsys.readouterr().out
    assert "**0.92 ± 0.02 (n=3)**" in markdown


def test_table_shows_the_floor_the_records_report_beside_the_methods():
    from dfabench.report.frame import records_frame
    from dfabench.report.tables import wide

    def record(method, seed, value, floors):
        return {"id": f"{method}{seed}", "domain": "lm", "dataset": "kjv", "model": "transformer", "method": method,
                "scale": "small", "seed": seed, "status": "ok", "primary_metric": "perplexity",
                "higher_is_better": False, "metrics": {"test": {"perplexity": value}},
                "extras": {"floors": floors} if floors is not None else {}}

    unigram = {"perplexity": {"value": 365.0156, "what": "unigram", "higher_is_better": False}}
    table = wide(records_frame([record("bp", s, 65.0 + s, unigram) for s in range(2)]
                               + [record("dfa", s, 99.0 + s, unigram) for s in range(2)]))
    assert table.loc[0, "floor"] == "365" and list(table.columns).index("floor") < list(table.columns).index("bp")
    without = wide(records_frame([record("bp", s, 65.0 + s, None) for s in range(2)]))
    assert "floor" not in without.columns


def test_table_shows_a_secondary_metric_with_its_own_direction(tmp_path, capsys):
    # ctr declares auc (primary, higher is better) and logloss (lower is better)
    for method, (auc, logloss) in {"bp": (0.80, 0.45), "dfa": (0.78, 0.47)}.items():
        for seed in range(2):
            write_record(tmp_path, {"id": f"{method}{seed}", "domain": "ctr", "dataset": "synthetic", "model": "dcn",
                                    "method": method, "scale": "small", "seed": seed, "status": "ok",
                                    "primary_metric": "auc", "higher_is_better": True,
                                    "metrics": {"test": {"auc": auc + seed / 100, "logloss": logloss - seed / 100}}})
    assert main(["table", "--results", str(tmp_path), "--format", "md"]) == 0  # ctr's table_metrics: both, AUC first
    out = capsys.readouterr().out
    assert out.index("auc ↑") < out.index("logloss ↓") and "**0.445 ± 0.0071 (n=2)**" in out
    assert main(["table", "--results", str(tmp_path), "--format", "md", "--metric", "logloss"]) == 0
    out = capsys.readouterr().out
    assert "logloss ↓" in out and "auc" not in out
    assert "**0.445 ± 0.0071 (n=2)**" in out  # BP's lower logloss is the best
    assert "+0.02" in out  # DFA − BP, paired by seed
    assert main(["table", "--results", str(tmp_path), "--format", "md", "--metric", "all"]) == 0
    out = capsys.readouterr().out
    assert out.index("auc ↑") < out.index("logloss ↓") and "**0.805 ± 0.0071 (n=2)**" in out
    assert exit_code(["table", "--results", str(tmp_path), "--metric", "psnr"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown metric 'psnr'" in err[0]


def test_methods_a_task_cannot_offer_are_skipped_with_a_reason():
    # ToyTask declares neither the 'layerwise' capability (fa) nor 'micro' points (dfa-micro).
    runs, notes = plan(["toy/line/net"], ["dfa", "fa", "dfa-micro"], "smoke", [0])
    assert [r.method for r in runs] == ["dfa"]
    assert any("fa does not apply" in n and "nn.Linear / nn.Conv2d" in n for n in notes)
    assert any("dfa-micro does not apply" in n and "'micro'" in n for n in notes)
    mlp_runs, mlp_notes = plan([MLP_SMOKE], ["fa"], "smoke", [0])
    assert [r.method for r in mlp_runs] == ["fa"] and not mlp_notes


def test_a_checkout_is_dirty_when_its_code_differs_and_not_when_its_records_do(tmp_path):
    """Records written into a checkout's results/ (re-runs of committed ones) leave it clean: the code is
    still its commit's; an edited module makes it dirty."""
    import subprocess

    from dfabench.harness.provenance import checkout_state

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "results" / "runs").mkdir(parents=True)
    (tmp_path / "results" / "runs" / "a.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    assert checkout_state(tmp_path)["dirty"] is False
    (tmp_path / "results" / "runs" / "a.json").write_text('{"again": 1}')
    assert checkout_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert checkout_state(tmp_path)["dirty"] is True
    assert checkout_state(tmp_path / "nowhere") == {"commit": None, "dirty": None}


def test_provenance_of_a_copy_without_git_comes_from_the_environment(monkeypatch):
    from dfabench.harness import provenance

    monkeypatch.setenv("DFABENCH_GIT_COMMIT", "0123abc")
    monkeypatch.setenv("DFABENCH_GIT_DIRTY", "0")
    provenance.git_state.cache_clear()
    try:
        assert provenance.git_state() == {"commit": "0123abc", "dirty": False}
    finally:
        provenance.git_state.cache_clear()


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_the_optimiser_gets_every_configured_setting(name):
    """Weight decay and Adam's betas reach torch's optimiser as configured (the LM's beta2 0.98, the
    graphs' 5e-4): at the gate's short budgets dropping them moves no metric beyond seed noise, so this
    is their guard (benchmarks/gate_mutants.py)."""
    from dfabench.harness.optim import build_optimizer

    hp = TrainHParams(optimizer=name, lr=2e-3, betas=(0.8, 0.98), weight_decay=5e-4, momentum=0.5)
    group = build_optimizer([torch.nn.Parameter(torch.zeros(2))], hp).param_groups[0]
    assert group["lr"] == 2e-3 and group["weight_decay"] == 5e-4
    assert group["betas" if name != "sgd" else "momentum"] == ((0.8, 0.98) if name != "sgd" else 0.5)


def test_exponential_schedule_ends_at_lr_times_gamma():
    """NeRF's rule: lr decays geometrically, per epoch, from lr to lr * gamma over the run."""
    from dfabench.harness.optim import Schedule, build_optimizer

    hp = TrainHParams(lr=1e-3, epochs=10, schedule="exponential", gamma=0.1)
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], hp)
    schedule, rates = Schedule(optimizer, hp), []
    for _ in range(hp.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_step()  # per-step calls leave it alone
        schedule.after_epoch()
    assert rates[0] == pytest.approx(1e-3)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    ratios = [b / a for a, b in zip(rates, rates[1:])]
    assert ratios == pytest.approx([0.1 ** 0.1] * 9)


def test_warmup_schedule_ramps_linearly_then_holds():
    from dfabench.harness.optim import Schedule, build_optimizer

    hp = TrainHParams(lr=1e-3, epochs=2, schedule="warmup", warmup_steps=4)
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(2))], hp)
    schedule, rates = Schedule(optimizer, hp), []
    for _ in range(7):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_step()
        schedule.after_epoch()  # per-epoch calls leave it alone
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3])


def test_table_counts_failed_runs_in_every_domain(tmp_path, capsys):
    # ctr and nerf show several test metrics per cell; a failed run has none, and used to vanish
    for domain, dataset, model, metrics in (("ctr", "synthetic", "dcn", {"auc": 0.8, "logloss": 0.45}),
                                            ("nerf", "blobs", "nerf", {"psnr": 30.0, "ssim": 0.9}),
                                            ("mlp", "digits", "mlp", {"accuracy": 0.9})):
        primary = next(iter(metrics))
        for seed, status in enumerate(("ok", "ok", "error")):
            write_record(tmp_path, {"id": f"{domain}{seed}", "domain": domain, "dataset": dataset, "model": model,
                                    "method": "bp", "scale": "small", "seed": seed, "status": status,
                                    "error": "DatasetUnavailable: x" if status == "error" else None,
                                    "primary_metric": primary, "higher_is_better": True,
                                    "metrics": {"test": metrics if status == "ok" else {}}})
    assert main(["table", "--results", str(tmp_path), "--format", "md"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| small")]
    assert len(rows) == 5  # auc, logloss, psnr, ssim, accuracy
    assert all("(n=2) [1 failed]" in row for row in rows), rows


def test_suite_bar_counts_failures_apart_and_its_eta_ignores_them(monkeypatch):
    import functools

    from dfabench.harness import progress
    from dfabench.harness.progress import SuiteBar

    # the bar itself is what is checked: shown even where TQDM_DISABLE=1 hides bars (an explicit
    # argument beats tqdm's environment defaults)
    monkeypatch.setattr(progress, "tqdm", functools.partial(progress.tqdm, disable=False))

    with SuiteBar(total=10, done=2) as suite:
        for status in ("error", "error", "ok", "error", "diverged"):
            suite.start("a run")
            suite.finished({"status": status})
        assert suite.failed == 3
        assert (suite.bar.n, suite.bar.total) == (4, 7)  # 2 done + ok + diverged; 3 failures left out
        assert "3 failed" in str(suite.bar)
