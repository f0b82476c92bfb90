"""The gate's statistics on synthetic records (each rule fires on its defect and stays quiet on seed
noise), and its commands end to end on the digits MLP at the gate scale."""
from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path

import pytest

from dfabench.cli import main
from dfabench.guards.check import detectable, failures, reference
from dfabench.task import floor

CELL = "mlp/digits/mlp"
EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "my_method" / "my_method.py") + ":MyMethod"


def _rec(method, seed, value, status="ok", extras=None, cell=CELL, metric="accuracy", higher=True):
    domain, dataset, model = cell.split("/")
    return {"id": f"{method}{seed}", "domain": domain, "dataset": dataset, "model": model, "method": method,
            "scale": "gate", "seed": seed, "status": status, "primary_metric": metric, "higher_is_better": higher,
            "metrics": {"val": {metric: value}, "test": {metric: value}}, "extras": extras or {}}


def _records(values: dict[str, list[float]], **kw) -> list[dict]:
    return [_rec(m, s, v, **kw) for m, vs in values.items() for s, v in enumerate(vs)]


HEALTHY = {"bp": [0.960, 0.975, 0.970, 0.980], "dfa": [0.930, 0.950, 0.940, 0.955],
           "shallow": [0.870, 0.885, 0.880, 0.875]}


def test_the_reference_keeps_each_quantity_per_seed_and_the_same_runs_pass():
    ref = reference(_records(HEALTHY))
    q = ref["cells"][CELL]["quantities"]
    assert set(q) == {"bp", "dfa", "shallow", "dfa−bp", "shallow−bp", "dfa−shallow"}
    assert q["dfa−bp"]["values"] == pytest.approx([-0.03, -0.025, -0.03, -0.025])
    assert q["bp"]["std"] == pytest.approx(statistics.stdev(HEALTHY["bp"])) and q["bp"]["n"] == 4
    assert ref["per_test_level"] == pytest.approx(0.05 / 12)  # 6 quantities, two sides each
    assert failures(_records(HEALTHY), ref) == []


def test_a_shift_fires_exactly_beyond_the_detectable_regression_and_not_below_it():
    ref = reference(_records(HEALTHY))
    d = detectable(ref)[CELL]["dfa−bp"]
    for factor, fires in ((0.98, False), (1.02, True)):
        moved = {**HEALTHY, "dfa": [v - factor * d for v in HEALTHY["dfa"]]}  # same spread, shifted mean
        lines = [line for line in failures(_records(moved), ref) if "dfa−bp" in line]
        assert bool(lines) is fires, (factor, lines)
    assert "worse by" in lines[0] and "one-sided level 0.0042" in lines[0]


def test_seed_noise_alone_rarely_fails_the_gate():
    """Fresh seeds from the recorded distributions: the family-wise false alarm rate stays near its 5%."""
    rng, alarms, trials = random.Random(0), 0, 300

    def draw(offset):
        return {m: [mu + rng.gauss(0, 0.01) for _ in range(4)] for m, mu in (("bp", 0.97), ("dfa", 0.94 + offset),
                                                                            ("shallow", 0.88))}
    for _ in range(trials):
        ref = reference(_records(draw(0.0)))
        alarms += bool(failures(_records(draw(0.0)), ref))
    assert alarms / trials <= 0.08
    # and a regression of five spreads is caught nearly always
    caught = sum(bool(failures(_records(draw(-0.05)), reference(_records(draw(0.0))))) for _ in range(100))
    assert caught >= 90


def test_a_harness_bug_that_hurts_every_method_alike_fails_on_the_absolute_checks():
    ref = reference(_records(HEALTHY))
    shift = 1.05 * max(detectable(ref)[CELL][m] for m in HEALTHY)
    worse = {m: [v - shift for v in vs] for m, vs in HEALTHY.items()}  # every gap as it was
    lines = failures(_records(worse), ref)
    assert not any("−" in line.split(":")[1] for line in lines)  # no gap, no margin moved
    assert {line.split(": ")[1].split(" ")[0] for line in lines} == {"bp", "dfa", "shallow"}


def test_a_gap_that_closed_is_a_change_too_and_says_how_to_accept_it():
    ref = reference(_records(HEALTHY))
    like_bp = {**HEALTHY, "dfa": [v - 0.001 for v in HEALTHY["bp"]]}  # DFA's feedback became BP's gradient
    lines = failures(_records(like_bp), ref)
    assert any("dfa−bp" in line and "better by" in line and "record a new reference" in line for line in lines)


def test_lost_feedback_fails_the_margin_over_shallow():
    ref = reference(_records(HEALTHY))
    lost = {**HEALTHY, "dfa": [v + 0.002 for v in HEALTHY["shallow"]]}
    assert any(line.startswith(f"{CELL}: dfa−shallow") and "worse" in line for line in failures(_records(lost), ref))


ALIGNED = {"dfa": [0.48, 0.52, 0.45, 0.50]}  # cosines of DFA's hidden updates with BP's gradient, per seed


def _with_alignment(records: list[dict], cosines: dict[str, list[float]]) -> list[dict]:
    for r in records:
        if r["method"] in cosines:
            r["alignment"] = {"mean_grad_cos": cosines[r["method"]][r["seed"]]}
    return records


def test_a_noisier_feedback_path_fails_on_the_alignment_though_the_metric_holds():
    """The alignment is guarded like a metric: a feedback path that lost some of its signal moves it
    (here by a third) while the accuracy stays put; a run that stops measuring it fails too."""
    ref = reference(_with_alignment(_records(HEALTHY), ALIGNED))
    assert ref["cells"][CELL]["quantities"]["dfa alignment"]["values"] == ALIGNED["dfa"]
    assert failures(_with_alignment(_records(HEALTHY), ALIGNED), ref) == []
    noisier = {"dfa": [c - 0.16 for c in ALIGNED["dfa"]]}
    lines = failures(_with_alignment(_records(HEALTHY), noisier), ref)
    assert len(lines) == 1 and lines[0].startswith(f"{CELL}: dfa alignment") and "worse by 0.16" in lines[0]
    assert failures(_records(HEALTHY), ref) == [f"{CELL}: dfa alignment: recorded, but the new runs measure none"]


def test_failed_runs_missing_methods_and_floors():
    ref = reference(_records(HEALTHY))
    crashed = _records(HEALTHY)[:-1] + [_rec("shallow", 3, float("nan"), status="diverged")]
    assert any("shallow seed 3: run diverged" in line for line in failures(crashed, ref))
    no_dfa = _records({m: v for m, v in HEALTHY.items() if m != "dfa"})
    assert f"{CELL}: dfa: no ok records to check" in failures(no_dfa, ref)
    chance = {"floors": {"accuracy": floor(0.1, "chance")}}
    at_chance = _records(HEALTHY)[:-1] + [_rec("dfa", 3, 0.1, extras=chance)]
    assert any("dfa seed 3: accuracy 0.1 is not above chance (0.1)" in line for line in failures(at_chance, ref))


def _lm(method, seed, ppl):
    unigram = {"floors": {"perplexity": floor(181.4, "the unigram distribution (add-one)", higher_is_better=False)}}
    return _rec(method, seed, ppl, extras=unigram, cell="lm/kjv/gpt2-preln", metric="perplexity", higher=False)


def test_a_declared_finding_may_sit_on_its_floor_and_fails_when_it_leaves_it():
    collapsed = [_lm("bp", s, 40.0 + s) for s in range(3)] + [_lm("dfa", s, 187.0 + s) for s in range(3)]
    plain = reference(collapsed)
    assert sum("is not below the unigram" in line for line in failures(collapsed, plain)) == 3  # undeclared
    mech = "tests/test_lm_task.py::test_dfa_collapses_the_pre_ln_stream_and_not_the_post_ln_one"
    ref = reference(collapsed, {"lm/kjv/gpt2-preln": {"dfa": {"mechanism": mech, "why": "pre-LN collapse"}}})
    assert failures(collapsed, ref) == []
    assert reference(collapsed, previous=ref)["cells"]["lm/kjv/gpt2-preln"]["findings"]["dfa"]["mechanism"] == mech
    healed = collapsed[:3] + [_lm("dfa", s, 150.0 + s) for s in range(3)]
    lines = failures(healed, ref)
    assert sum("the declared finding 'pre-LN collapse' changed: perplexity 15" in line and mech in line
               for line in lines) == 3


# --- the commands ----------------------------------------------------------------------------------

GATE = ["--scale", "gate"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """bp, dfa, shallow and an outside method on the digits MLP at the gate scale (3 seeds, about 4 s),
    and the reference `baseline record --method` made from them."""
    root = tmp_path_factory.mktemp("gate")
    assert main(["baseline", "record", *GATE, "--method", EXAMPLE, "--cells", CELL, "--seeds", "3",
                 "--results", str(root / "good"), "--baselines", str(root / "baselines")]) == 0
    return root


def test_baseline_record_with_an_outside_method_runs_it_beside_bp_dfa_and_shallow(recorded):
    ref = json.loads((recorded / "baselines" / "gate" / "reference.json").read_text())
    cell = ref["cells"][CELL]
    assert cell["methods"] == ["bp", "dfa", "shallow", "ternary-dfa"] and cell["seeds"] == [0, 1, 2]
    assert cell["method_specs"]["ternary-dfa"].endswith("my_method.py:MyMethod")
    assert {"ternary-dfa−bp", "dfa−shallow"} <= set(cell["quantities"])


def test_check_reruns_nothing_when_the_records_are_there_and_prints_the_detectable_shift(recorded, capsys):
    assert main(["check", *GATE, "--method", EXAMPLE, "--results", str(recorded / "good"),
                 "--baselines", str(recorded / "baselines")]) == 0
    out = capsys.readouterr()
    assert "0 to run" in out.err and "check: ok (1 cells" in out.out
    assert f"  {CELL} (accuracy, 3 seeds): bp " in out.out and "ternary-dfa−bp " in out.out


def test_fail_fast_gives_the_full_gates_verdict(recorded, tmp_path, capsys):
    ref = json.loads((recorded / "baselines" / "gate" / "reference.json").read_text())
    base = ["check", *GATE, "--no-run", "--results", str(recorded / "good"), "--baselines"]
    assert main([*base, str(recorded / "baselines"), "--fail-fast"]) == 0
    shifted = tmp_path / "shifted"
    q = ref["cells"][CELL]["quantities"]["bp"]
    q["values"] = [v + 0.2 for v in q["values"]]
    q["mean"] += 0.2
    (shifted / "gate").mkdir(parents=True)
    (shifted / "gate" / "reference.json").write_text(json.dumps(ref))
    capsys.readouterr()
    assert main([*base, str(shifted)]) == 1
    full = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]
    assert main([*base, str(shifted), "--fail-fast"]) == 1
    out = capsys.readouterr()
    assert [line for line in out.out.splitlines() if line.startswith("FAIL")] == full
    assert f"FAIL {CELL}: bp " in full[0] and "worse by 0.2" in full[0]
    assert "stopped at mlp/digits/mlp, the first failing cell (--fail-fast); 0 cells not run" in out.err


def _copy_without(recorded: Path, dest: Path, drop) -> Path:
    """A copy of the recorded results without the records ``drop(record)`` names."""
    (dest / "runs").mkdir(parents=True)
    for path in (recorded / "good" / "runs").glob("*.json"):
        if not drop(json.loads(path.read_text())):
            (dest / "runs" / path.name).write_text(path.read_text())
    return dest


def test_check_runs_the_missing_runs_itself_and_reproduces_the_reference(recorded, tmp_path, capsys):
    results = _copy_without(recorded, tmp_path / "r", lambda r: r["method"] == "dfa" and r["seed"] > 0)
    assert main(["check", *GATE, "--results", str(results), "--baselines", str(recorded / "baselines")]) == 0
    err = capsys.readouterr().err
    assert "check: mlp/digits/mlp" in err and "12 runs planned, 10 already recorded" in err and "2 to run" in err
    assert len(list((results / "runs").glob("*.json"))) == 12


def test_an_edited_outside_method_is_run_from_its_new_file_and_compared_by_name(recorded, tmp_path, capsys):
    """Its edited copy keys its records differently (another hash); the gate runs the copy and compares it
    with the recorded method of the same name."""
    edited = tmp_path / "my_method.py"
    source = Path(EXAMPLE.rpartition(":")[0]).read_text()
    edited.write_text(source.replace("return (ternary * peak).reshape(error.shape)",
                                     "return (0 * ternary * peak).reshape(error.shape)"))
    results = _copy_without(recorded, tmp_path / "r", lambda r: r["method"].startswith("ternary-dfa"))
    main(["check", *GATE, "--method", f"{edited}:MyMethod", "--results", str(results),
          "--baselines", str(recorded / "baselines")])
    out = capsys.readouterr()
    assert "12 runs planned, 9 already recorded" in out.err and "no ok records" not in out.out
    keys = {json.loads(p.read_text())["method"] for p in (results / "runs").glob("*.json")}
    old = {json.loads(p.read_text())["method"] for p in (recorded / "good" / "runs").glob("*.json")}
    assert len({k for k in keys | old if k.startswith("ternary-dfa@")}) == 2


def test_an_outside_method_is_matched_by_name_whatever_its_hash():
    ref = reference(_records({"bp": HEALTHY["bp"], "mine@0000aaaa": HEALTHY["dfa"]}))
    assert "mine−bp" in ref["cells"][CELL]["quantities"]
    assert failures(_records({"bp": HEALTHY["bp"], "mine@1111bbbb": HEALTHY["dfa"]}), ref) == []
    worse = _records({"bp": HEALTHY["bp"], "mine@1111bbbb": [v - 0.1 for v in HEALTHY["dfa"]]})
    assert any(line.startswith(f"{CELL}: mine−bp") and "worse" in line for line in failures(worse, ref))


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["check", *GATE, "--results", str(tmp_path), "--baselines", str(tmp_path)]) == 2
    assert "no reference" in capsys.readouterr().err
    old = tmp_path / "gate" / "reference.json"
    old.parent.mkdir()
    old.write_text(json.dumps({CELL: {"methods": {}}}))
    assert main(["check", *GATE, "--results", str(tmp_path), "--baselines", str(tmp_path)]) == 2
    assert "old reference" in capsys.readouterr().err
    assert main(["baseline", "record", *GATE, "--finding", "lm/kjv:dfa", "--results", str(tmp_path),
                 "--baselines", str(tmp_path)]) == 2
    assert "--finding 'lm/kjv:dfa': expected" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_baseline_record_refuses_an_undeclared_method_on_its_floor(tmp_path, capsys, monkeypatch):
    import dfabench.harness.store as store

    collapsed = [_lm("bp", s, 40.0 + s) for s in range(2)] + [_lm("dfa", s, 187.0 + s) for s in range(2)]
    monkeypatch.setattr(store, "iter_records", lambda results: iter(collapsed))
    args = ["baseline", "record", *GATE, "--results", str(tmp_path), "--baselines", str(tmp_path / "b")]
    assert main(args) == 2
    assert "is not below the unigram" in capsys.readouterr().err and not (tmp_path / "b").exists()
    assert main([*args, "--finding", "lm/kjv/gpt2-preln:dfa:tests/test_lm_task.py::x|pre-LN collapse"]) == 0
    ref = json.loads((tmp_path / "b" / "gate" / "reference.json").read_text())
    assert ref["cells"]["lm/kjv/gpt2-preln"]["findings"]["dfa"] == {"mechanism": "tests/test_lm_task.py::x",
                                                                   "why": "pre-LN collapse"}
    assert math.isclose(ref["cells"]["lm/kjv/gpt2-preln"]["quantities"]["dfa"]["mean"], 187.5)
    assert main(args) == 0  # re-recorded without --finding: the declared finding is kept
    assert "findings" in json.loads((tmp_path / "b" / "gate" / "reference.json").read_text())["cells"]["lm/kjv/gpt2-preln"]


def test_the_readme_quotes_how_sharp_the_committed_gate_is(capsys, monkeypatch):
    """The README's table of detectable shifts is what `dfabench check --describe` prints for the
    committed reference (re-recording the reference without updating the README fails here)."""
    import re
    import shlex

    root = Path(__file__).resolve().parents[1]
    found = re.findall(r"<!-- gate: dfabench (.+?) -->\n```\n(.*?)```\n", (root / "README.md").read_text(), flags=re.S)
    assert len(found) == 1, "the README quotes the gate's sharpness once, as a generated block"
    args, quoted = found[0]
    monkeypatch.chdir(root)
    assert main(shlex.split(args)) == 0
    assert capsys.readouterr().out == quoted, f"re-run `dfabench {args}` and paste its output into the README"


def test_every_committed_gate_cell_separates_bp_dfa_and_shallow_with_its_seeds():
    """A cell that cannot tell its methods apart can detect nothing: in the committed reference every
    paired gap to BP and DFA's margin over shallow has a 95% t-interval that excludes 0, and every
    domain is covered."""
    from scipy import stats

    ref = json.loads((Path(__file__).resolve().parents[1] / "baselines" / "gate" / "reference.json").read_text())
    assert {cell.split("/")[0] for cell in ref["cells"]} == {"mlp", "graph", "ctr", "vision", "nerf", "lm"}
    for cell, entry in ref["cells"].items():
        for name, q in entry["quantities"].items():
            if "−" in name:
                half = stats.t.ppf(0.975, q["n"] - 1) * q["std"] / math.sqrt(q["n"])
                assert abs(q["mean"]) > half, (cell, name, q["mean"], half)
