"""`dfabench verify`: a re-run from a record's own configuration agrees with it bit for bit here; a
record whose metric or configuration was edited is reported as disagreeing (exit 1)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from dfabench.cli import main
from dfabench.harness.executor import run_local
from dfabench.harness.plan import plan
from dfabench.guards.verify import FILE, TOLERANCE_REL, rel_diff

CELL = "mlp/digits/mlp"


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory) -> Path:
    """Two smoke records (bp and dfa, seed 0) of the seconds-fast digits MLP."""
    results = tmp_path_factory.mktemp("verify") / "results"
    runs, _ = plan([CELL], ["bp", "dfa"], "smoke", [0])
    run_local(runs, results)
    return results


def copy_of(results: Path, tmp_path: Path) -> Path:
    target = tmp_path / "results"
    shutil.copytree(results / "runs", target / "runs")
    return target


def record_files(results: Path) -> dict[str, Path]:
    return {json.loads(p.read_text())["method"]: p for p in (results / "runs").glob("*.json")}


def test_an_untouched_record_agrees_bit_for_bit_and_an_edited_metric_disagrees(smoke_results, tmp_path, capsys):
    results = copy_of(smoke_results, tmp_path)
    files = record_files(results)
    tampered = json.loads(files["dfa"].read_text())
    claimed = tampered["metrics"]["test"]["accuracy"] + 0.05  # still a valid record: only the number lies
    tampered["metrics"]["test"]["accuracy"] = claimed
    files["dfa"].write_text(json.dumps(tampered))
    before = {p.name: p.read_bytes() for p in (results / "runs").iterdir()}

    assert main(["verify", str(results), "--sample", "2", "--seed", "3"]) == 1
    out = capsys.readouterr()
    assert "1 of 2 agree (1 bit-identical), 1 disagree" in out.out
    assert {p.name: p.read_bytes() for p in (results / "runs").iterdir()} == before  # RESULTS' runs untouched

    report = json.loads((results / FILE).read_text())
    assert set(report) == {"verified_at", "sample", "seed", "tolerance", "environment", "records"}
    assert report["verified_at"].endswith("Z") and report["sample"] == 2 and report["seed"] == 3
    assert report["tolerance"] == {"rel": TOLERANCE_REL}
    assert set(report["environment"]) >= {"commit", "versions", "device"}
    bp_id, dfa_id = (json.loads(files[m].read_text())["id"] for m in ("bp", "dfa"))
    bp, dfa = report["records"][bp_id], report["records"][dfa_id]
    assert set(bp) == {"agree", "identical", "max_rel_diff", "metrics"}
    assert bp["agree"] and bp["identical"] and bp["max_rel_diff"] == 0.0
    assert all(recorded == rerun for recorded, rerun in bp["metrics"].values())
    assert "test.accuracy" in bp["metrics"] and "val.accuracy" in bp["metrics"]
    assert not dfa["agree"] and not dfa["identical"]
    recorded, rerun = dfa["metrics"]["test.accuracy"]
    assert recorded == claimed and rerun == pytest.approx(claimed - 0.05)
    assert dfa["max_rel_diff"] == pytest.approx(0.05 / claimed) and dfa["max_rel_diff"] > TOLERANCE_REL


def test_an_edited_configuration_does_not_give_its_id_and_disagrees_without_running(smoke_results, tmp_path, capsys):
    results = copy_of(smoke_results, tmp_path)
    path = record_files(results)["bp"]
    record = json.loads(path.read_text())
    record["hparams"]["epochs"] += 1
    path.write_text(json.dumps(record))
    (path.parent / record_files(results)["dfa"].name).unlink()
    assert main(["verify", str(results), "--sample", "1"]) == 1
    assert "gives the id" in capsys.readouterr().err
    entry = json.loads((results / FILE).read_text())["records"][record["id"]]
    assert entry["agree"] is False and entry["max_rel_diff"] is None


def test_a_later_verification_keeps_the_entries_of_other_records(smoke_results, tmp_path, capsys):
    results = copy_of(smoke_results, tmp_path)
    record_files(results)["dfa"].unlink()
    earlier = {"verified_at": "2026-01-01T00:00:00Z", "sample": 1, "seed": 9, "tolerance": {"rel": TOLERANCE_REL},
               "environment": {}, "records": {"0123456789abcdef": {"agree": True, "identical": True,
                                                                   "max_rel_diff": 0.0, "metrics": {}}}}
    (results / FILE).write_text(json.dumps(earlier))
    assert main(["verify", str(results), "--sample", "5", "--domain", "mlp", "--max-seconds", "600"]) == 0
    report = json.loads((results / FILE).read_text())
    assert "0123456789abcdef" in report["records"] and len(report["records"]) == 2
    assert report["sample"] == 1 and report["seed"] == 0  # this verification's own figures
    assert "1 of 1 agree" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["nowhere"], "no such folder"),
    (["{empty}"], "no valid run records"),
    (["{results}", "--sample", "0"], "--sample must be at least 1"),
    (["{results}", "--domain", "nerf"], "no completed record"),
    (["{results}", "--max-seconds", "0"], "recorded wall_s <= 0"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(smoke_results, tmp_path, capsys, args, message):
    results = copy_of(smoke_results, tmp_path)
    (tmp_path / "empty").mkdir()
    argv = [a.format(results=results, empty=tmp_path / "empty") for a in args]
    if argv[0] == "nowhere":
        argv[0] = str(tmp_path / "nowhere")
    assert main(["verify", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (results / FILE).exists() and not (tmp_path / "empty" / FILE).exists()


def test_relative_difference_is_symmetric_and_treats_stored_nan_as_equal():
    assert rel_diff(0.9, 0.9) == 0.0 and rel_diff(0, 0) == 0.0
    assert rel_diff(1.0, 0.98) == rel_diff(0.98, 1.0) == pytest.approx(0.02)
    assert rel_diff("nan", "nan") == 0.0 and rel_diff("nan", 1.0) == math.inf and rel_diff(None, 1.0) == math.inf


def test_records_of_user_data_are_not_chosen_since_a_record_keeps_no_path(smoke_results, tmp_path, capsys):
    results = copy_of(smoke_results, tmp_path)
    for path in record_files(results).values():
        record = json.loads(path.read_text())
        record["data"] = "0123456789abcdef"  # a content fingerprint: the files it names are not here
        path.write_text(json.dumps(record))
    assert main(["verify", str(results)]) == 2
    assert "no completed record" in capsys.readouterr().err


def test_a_record_of_an_outside_method_whose_code_is_not_here_is_not_chosen(smoke_results, tmp_path, capsys):
    results = copy_of(smoke_results, tmp_path)
    for path in record_files(results).values():
        record = json.loads(path.read_text())
        record["method_origin"] = {"kind": "file", "spec": "gone.py:Mine", "file": "gone.py", "sha256": "0" * 64}
        path.write_text(json.dumps(record))
    assert main(["verify", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no completed record" in err[0] and "2 cannot (mlp: the code of its method (gone.py:Mine)" in err[0]
