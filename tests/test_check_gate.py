"""The gate: a reference recorded from healthy runs passes, and fails on a broken DFA, a widened gap,
a failed run or a metric at its floor."""
from __future__ import annotations

import json

import pytest

from dfabench.guards.check import failures, reference
from dfabench.task import floor
from dfabench.cli import main
from dfabench.report.frame import records_frame

CELL = ["mlp/digits/mlp", "--scale", "smoke", "--seeds", "3"]


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """Smoke runs of bp, dfa and shallow on digits (3 seeds) and the reference recorded from them."""
    root = tmp_path_factory.mktemp("gate")
    assert main(["run", *CELL, "--method", "bp,dfa,shallow", "--results", str(root / "good")]) == 0
    assert main(["baseline", "record", "--scale", "smoke", "--results", str(root / "good"),
                 "--baselines", str(root / "baselines")]) == 0
    return root


def test_healthy_runs_pass_and_the_reference_holds_what_the_gate_needs(healthy, capsys):
    ref = json.loads((healthy / "baselines" / "smoke" / "reference.json").read_text())
    cell = ref["mlp/digits/mlp"]
    assert cell["methods"]["bp"]["n"] == 3 and cell["higher_is_better"] is True
    assert set(cell["gaps"]) == {"dfa", "shallow"} and cell["dfa_over_shallow"] > 0.03
    assert main(["check", "--scale", "smoke", "--no-run", "--results", str(healthy / "good"),
                 "--baselines", str(healthy / "baselines")]) == 0
    assert "check: ok" in capsys.readouterr().out


def test_dfa_with_its_feedback_scaled_to_zero_fails_the_check(healthy, tmp_path, capsys):
    bad = ["--results", str(tmp_path)]
    assert main(["run", *CELL, "--method", "bp,shallow", *bad]) == 0
    assert main(["run", *CELL, "--method", "dfa", "--set", "method_options.scale=0", *bad]) == 0
    code = main(["check", "--scale", "smoke", "--no-run", *bad, "--baselines", str(healthy / "baselines")])
    out = capsys.readouterr().out
    assert code == 1
    assert "mlp/digits/mlp: dfa is" in out and "over shallow" in out


def test_check_runs_the_missing_reference_runs_itself(healthy, tmp_path, capsys):
    assert main(["check", "--scale", "smoke", "--results", str(tmp_path),
                 "--baselines", str(healthy / "baselines")]) == 0
    assert len(list((tmp_path / "runs").glob("*.json"))) == 9


def _rec(method, seed, value, status="ok", extras=None):
    return {"id": f"{method}{seed}", "domain": "mlp", "dataset": "digits", "model": "mlp", "method": method,
            "scale": "smoke", "seed": seed, "status": status, "primary_metric": "accuracy",
            "higher_is_better": True, "metrics": {"val": {"accuracy": value}, "test": {"accuracy": value}},
            "extras": extras or {}}


def test_gap_tolerance_floors_and_failed_runs():
    healthy = [_rec("bp", s, 0.90 + 0.01 * s) for s in range(3)] + [_rec("dfa", s, 0.85 + 0.01 * s) for s in range(3)]
    ref = reference(records_frame(healthy))
    assert failures(healthy, ref) == []
    slightly = [_rec("bp", s, 0.90 + 0.01 * s) for s in range(3)] + [_rec("dfa", s, 0.84 + 0.01 * s) for s in range(3)]
    assert failures(slightly, ref) == []  # 0.01 wider: inside the 0.02 floor
    wider = [_rec("bp", s, 0.90 + 0.01 * s) for s in range(3)] + [_rec("dfa", s, 0.80 + 0.01 * s) for s in range(3)]
    [line] = failures(wider, ref)
    assert "dfa−bp gap -0.1, recorded -0.05: widened by 0.05 > tolerance 0.02" in line
    crashed = healthy[:-1] + [_rec("dfa", 2, float("nan"), status="diverged")]
    assert any("dfa seed 2: run diverged" in line for line in failures(crashed, ref))
    chance = {"floors": {"accuracy": floor(0.1, "chance")}}
    at_chance = healthy[:-1] + [_rec("dfa", 2, 0.1, extras=chance)]
    assert any("accuracy 0.1 is not above chance (0.1)" in line for line in failures(at_chance, ref))


def test_check_without_reference_is_bad_input(tmp_path, capsys):
    assert main(["check", "--results", str(tmp_path), "--baselines", str(tmp_path)]) == 2
    assert "no reference" in capsys.readouterr().err


def test_an_lm_method_on_the_unigram_floor_fails_the_gate_and_the_shallow_control_may():
    def lm(method, seed, ppl):
        unigram = {"floors": {"perplexity": floor(365.0, "the unigram distribution (add-one)", higher_is_better=False)}}
        return {**_rec(method, seed, ppl, extras=unigram), "domain": "lm", "dataset": "kjv", "model": "transformer",
                "primary_metric": "perplexity", "higher_is_better": False,
                "metrics": {"val": {"perplexity": ppl}, "test": {"perplexity": ppl}}}

    healthy = [lm("bp", s, 65.0 + s) for s in range(3)] + [lm("dfa", s, 100.0 + s) for s in range(3)] \
        + [lm("shallow", s, 370.0) for s in range(3)]
    ref = reference(records_frame(healthy))
    assert failures(healthy, ref) == []  # shallow above the floor is allowed: it is the control
    collapsed = healthy[:3] + [lm("dfa", s, 365.0 + s) for s in range(3)] + healthy[6:]
    lines = failures(collapsed, ref)
    assert sum("is not below the unigram distribution (add-one) (365)" in line for line in lines) == 3
    assert lines[0].startswith("lm/kjv/transformer dfa seed 0: perplexity 365")
