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
from dfabench.guards.verify import BAND, FILE, NO_SPREAD_REL, cell_tolerance, rel_diff, stratified

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
    assert report["tolerance"]["same_environment"] == "bit-identical" and "seed spread" in report["tolerance"]["otherwise"]
    assert set(report["environment"]) >= {"commit", "versions", "device"}
    bp_id, dfa_id = (json.loads(files[m].read_text())["id"] for m in ("bp", "dfa"))
    bp, dfa = report["records"][bp_id], report["records"][dfa_id]
    assert set(bp) == {"agree", "identical", "max_rel_diff", "metrics", "tolerance"}
    assert bp["agree"] and bp["identical"] and bp["max_rel_diff"] == 0.0
    assert all(recorded == rerun for recorded, rerun in bp["metrics"].values())
    assert "test.accuracy" in bp["metrics"] and "val.accuracy" in bp["metrics"]
    assert not dfa["agree"] and not dfa["identical"]
    recorded, rerun = dfa["metrics"]["test.accuracy"]
    assert recorded == claimed and rerun == pytest.approx(claimed - 0.05)
    assert dfa["max_rel_diff"] == pytest.approx(0.05 / claimed) and dfa["max_rel_diff"] > NO_SPREAD_REL


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
    earlier = {"verified_at": "2026-01-01T00:00:00Z", "sample": 1, "seed": 9, "tolerance": {},
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


def _fake(domain, method, seed, acc, model="m"):
    return {"id": f"{domain}{method}{seed}", "domain": domain, "dataset": "d", "model": model, "method": method,
            "scale": "small", "seed": seed, "status": "ok", "primary_metric": "accuracy", "overrides": {}, "data": None,
            "metrics": {"test": {"accuracy": acc}, "val": {"accuracy": acc, "epoch": 3}}}


def test_the_tolerance_is_the_cells_seed_spread_in_the_metrics_units():
    """2.576 * sqrt(2) spreads: two independent draws of one cell differ by more in 1 pair of 100."""
    from statistics import NormalDist

    records = [_fake("mlp", "bp", s, a) for s, a in enumerate((0.90, 0.92, 0.94))] + [_fake("mlp", "dfa", 0, 0.8)]
    tol, source = cell_tolerance(records[0], records)
    assert BAND == pytest.approx(NormalDist().inv_cdf(0.995) * math.sqrt(2), rel=1e-3)
    assert tol == {"test.accuracy": pytest.approx(0.02 * BAND), "val.accuracy": pytest.approx(0.02 * BAND)}
    assert source == "3.64 x the seed spread of 3 bp seeds"
    tol, source = cell_tolerance(records[-1], records)  # one dfa seed: the cell's other methods' spread
    assert tol["test.accuracy"] == pytest.approx(0.02 * BAND) and "other methods" in source
    other_cell = _fake("mlp", "dfa", 0, 0.8, model="other")
    assert cell_tolerance(other_cell, records + [other_cell]) == ({}, f"no seed spread: {NO_SPREAD_REL:g} relative")


def test_a_sample_is_stratified_over_domains_and_their_methods():
    pool = [_fake(d, m, s, 0.5) for d in ("ctr", "lm", "mlp", "nerf") for m in ("bp", "dfa", "fa") for s in range(5)]
    pool += [_fake("mlp", "ext@0123abcd", s, 0.5) for s in range(40)]  # many records of one method
    for seed in range(5):
        chosen = stratified(pool, 8, seed)
        assert len(chosen) == 8 and len({r["id"] for r in chosen}) == 8
        assert sorted(r["domain"] for r in chosen) == ["ctr", "ctr", "lm", "lm", "mlp", "mlp", "nerf", "nerf"]
        assert all(len({r["method"] for r in chosen if r["domain"] == d}) == 2 for d in ("ctr", "lm", "mlp", "nerf"))
    assert len(stratified(pool[:3], 8, 0)) == 3


def test_elsewhere_a_rerun_agrees_within_the_cell_tolerance_and_not_beyond(smoke_results, tmp_path, monkeypatch):
    import copy

    import dfabench.guards.verify as verify

    monkeypatch.setattr(verify, "same_environment", lambda recorded, now: False)  # as on another machine
    record = json.loads(record_files(smoke_results)["bp"].read_text())
    for shift, agree in ((0.009, True), (-0.009, True), (0.011, False)):
        edited = copy.deepcopy(record)
        edited["metrics"]["test"]["accuracy"] += shift
        entry = verify.verify_one(edited, tmp_path / str(shift), "cpu", ({"test.accuracy": 0.01}, "given"))
        assert entry["agree"] is agree and not entry["identical"]
        assert entry["tolerance"] == {"source": "given", "metrics": {"test.accuracy": 0.01}}
        assert "tolerance test.accuracy 0.01 (given)" in entry["why"]
    assert "outside it: test.accuracy" in entry["why"]
    edited["metrics"]["test"]["loss"] *= 1 + 1e-5  # a metric without a spread: held to 1e-6 relative
    edited["metrics"]["test"]["accuracy"] = record["metrics"]["test"]["accuracy"]
    assert verify.verify_one(edited, tmp_path / "loss", "cpu", ({"test.accuracy": 0.01}, "given"))["agree"] is False


def test_a_record_names_its_processor_and_only_the_same_processor_is_the_same_environment(smoke_results):
    """Same commit and versions on another processor (other CPU kernels, other rounding) is another
    environment: there a re-run is judged by the cell tolerance, not bit for bit. A record that does not
    name its processor (written before it was recorded) shares no environment."""
    import torch

    from dfabench.guards.verify import same_environment

    record = json.loads(next((smoke_results / "runs").glob("*.json")).read_text())
    here = {**record["provenance"], "dirty": False}  # as made from a clean checkout
    assert here["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability() and here["cpu"]["model"]
    assert same_environment(here, dict(here))
    assert not same_environment(here, {**here, "cpu": {**here["cpu"], "capability": "AVX2" if
                                                      here["cpu"]["capability"] != "AVX2" else "AVX512"}})
    assert not same_environment({k: v for k, v in here.items() if k != "cpu"}, here)
