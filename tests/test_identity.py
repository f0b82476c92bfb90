"""Identity: ids and table rows follow every override and the data's content, never a path; the
committed records keep their ids; seed pairing refuses a seed recorded twice; no path in a record."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from dfabench.cli import main
from dfabench.harness.plan import plan
from dfabench.harness.store import iter_records, write_record
from records import valid_record

ROOT = Path(__file__).resolve().parent.parent
MLP = "mlp/digits/mlp"


def table_csv(capsys, results) -> pd.DataFrame:
    capsys.readouterr()
    assert main(["table", "--results", str(results), "--format", "csv"]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)


def test_an_override_is_its_own_row_and_a_no_op_override_is_the_default_run(tmp_path, capsys):
    results = tmp_path / "res"
    argv = ["run", MLP, "--method", "bp,dfa", "--scale", "smoke", "--results", str(results)]
    assert main(argv) == 0
    assert main(argv + ["--set", "lr=0.05"]) == 0
    frame = table_csv(capsys, results)
    assert sorted(set(frame.overrides)) == ["", "lr=0.05"]
    assert (frame.groupby("overrides").n.sum() == 2).all()  # bp and dfa, one seed each, in each row
    (default_lr,) = {r["hparams"]["lr"] for r in iter_records(results) if r["method"] == "bp" and not r["overrides"]}
    capsys.readouterr()
    assert main(argv + ["--set", f"lr={default_lr}"]) == 0
    assert "2 runs planned" in capsys.readouterr().err
    assert len(list(iter_records(results))) == 4  # bp at its own lr is the default bp run: not run again


def test_markdown_shows_an_overrides_column_only_when_a_row_has_overrides(tmp_path, capsys):
    results = tmp_path / "res"
    for seed in range(2):
        write_record(results, valid_record(f"a{seed}", seed=seed))
    capsys.readouterr()
    assert main(["table", "--results", str(results), "--format", "md"]) == 0
    assert "overrides" not in capsys.readouterr().out
    write_record(results, valid_record("b0", overrides={"lr": 1e6}, metrics={"val": {}, "test": {"acc": 0.1}}))
    assert main(["table", "--results", str(results), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "| overrides" in out and "lr=1000000.0" in out and "0.1 (n=1)" in out and "0.5 ± 0 (n=2)" in out


def test_a_seed_recorded_twice_is_not_paired(tmp_path, capsys):
    results = tmp_path / "res"
    write_record(results, valid_record("bp0", seed=0))
    write_record(results, valid_record("bp1", seed=1))
    write_record(results, valid_record("dfa0", method="dfa", seed=0))
    write_record(results, valid_record("dfa0-again", method="dfa", seed=0))  # e.g. before a tuned lr changed
    frame = table_csv(capsys, results)
    dfa = frame[frame.method == "dfa"].iloc[0]
    assert float(dfa.pairs) == 0 and str(dfa.duplicate) == "0" and dfa.gap == ""
    assert main(["table", "--results", str(results), "--format", "md"]) == 0
    assert "not paired: seed 0 recorded twice" in capsys.readouterr().out


def test_committed_records_are_valid_and_keep_the_ids_the_planner_gives_them(capsys):
    for name in ("small", "paper", "smoke"):
        records = list(iter_records(ROOT / "results" / name))
        assert "warning" not in capsys.readouterr().err
        planned: dict[tuple, set[str]] = {}
        for r in records:
            key = (r["domain"], r["dataset"], r["model"], r["method"], r["scale"])
            if key not in planned:
                runs, _ = plan(["/".join(key[:3])], [key[3]], key[4], list(range(5)), check_data=False)
                planned[key] = {run.id for run in runs}
            assert r["id"] in planned[key], f"results/{name}: {r['id']} would not count as done"


def test_the_generator_version_enters_an_id_only_where_a_task_gives_one(capsys):
    """Task.generator_version is None by default, and then the id is the one it always was: one
    committed record of every domain rebuilds its own id through verify's path from the record."""
    from dfabench.harness.identity import run_id
    from dfabench.task import get_task
    from dfabench.guards.verify import planned_from

    assert run_id("d", "x", "m", "bp", "small", {}, 0) == run_id("d", "x", "m", "bp", "small", {}, 0, None)
    assert run_id("d", "x", "m", "bp", "small", {}, 0, "abc") != run_id("d", "x", "m", "bp", "small", {}, 0)
    first: dict[str, dict] = {}
    for record in iter_records(ROOT / "results" / "small"):
        if get_task(record["domain"]).generator_version(record["dataset"]) is None:
            first.setdefault(record["domain"], record)
    assert {"mlp", "graph", "ctr", "vision", "lm", "nerf"} <= set(first)
    for record in first.values():
        assert planned_from(record).id == record["id"], record["domain"]


def test_a_record_carries_no_path_of_the_machine(tmp_path, capsys, monkeypatch):
    from dfabench.task import all_tasks

    task_class = type(all_tasks()["mlp"])
    secret = tmp_path / "home" / "someone" / "private"

    def failing_loss(self, *args, **kwargs):
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{secret}/weights.bin'")

    results = tmp_path / "res"
    argv = ["run", MLP, "--method", "bp", "--scale", "smoke", "--results", str(results)]
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/dfabench", *argv])
    monkeypatch.setattr(task_class, "loss", failing_loss)
    assert main(argv) == 1
    (path,) = (results / "runs").glob("*.json")
    text = path.read_text()
    assert str(tmp_path) not in text and "/usr/local" not in text and "/root" not in text
    record = json.loads(text)
    assert record["error"].endswith("'…/weights.bin'")
    assert record["provenance"]["command"] == f"dfabench run {MLP} --method bp --scale smoke --results …/res"


def test_a_large_data_file_is_hashed_once_across_processes(tmp_path, monkeypatch):
    from dfabench.harness import identity

    monkeypatch.setenv("DFABENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(identity, "LARGE", 10)
    data = tmp_path / "train.txt"
    data.write_bytes(b"0\t1\t2\n" * 100)
    first = identity.content_hash(str(data))
    identity._file_hash.cache_clear()  # as a new process would start
    monkeypatch.setattr("builtins.open", None)  # it must not read the file again
    assert identity.content_hash(str(data)) == first


def test_data_a_loader_fetches_into_its_folder_keeps_one_id(tmp_path):
    """Planetoid with download=true writes its raw files on the first check: the id is taken after."""
    from dfabench.task import Metric, Task, TrainHParams, register_task

    class FetchHParams(TrainHParams):
        data_dir: str | None = None

    @register_task
    class FetchingTask(Task):
        domain = "fetching"
        HParams = FetchHParams
        metrics = (Metric("score", True),)
        primary_metric = "score"
        datasets = {"remote": "fetched on first use"}
        models = {"net": "a model"}

        def check_data(self, dataset, hp, scale):
            raw = Path(hp.data_dir) / "raw.txt"
            if not raw.exists():
                raw.write_text("downloaded")

    folder = tmp_path / "data"
    folder.mkdir()
    first, _ = plan(["fetching/remote/net"], ["bp"], "smoke", [0], overrides={"data_dir": str(folder)})
    again, _ = plan(["fetching/remote/net"], ["bp"], "smoke", [0], overrides={"data_dir": str(folder)})
    assert first[0].id == again[0].id
    (folder / "raw.txt").write_text("other data")
    changed, _ = plan(["fetching/remote/net"], ["bp"], "smoke", [0], overrides={"data_dir": str(folder)})
    assert changed[0].id != first[0].id
