"""The equal-compute report (dfabench/report/compute.py) checked against hand-made records."""
from __future__ import annotations

import math

import pytest

from dfabench.report import compute as cr
from dfabench.cli import main
from dfabench.harness.store import write_record
from records import valid_record

T975_2 = 4.302652729911275  # scipy.stats.t.ppf(0.975, 2)


def _record(rid, method, seed, curve, budget=None, steps=10, cell=("d", "s", "m")):
    """curve: [(flops, seconds, val acc)] at each evaluation; the last point is the run's total."""
    history = [{"epoch": i + 1, "flops": f, "train_s": t, "items": 10 * (i + 1), "val": {"acc": v}}
               for i, (f, t, v) in enumerate(curve)]
    domain, dataset, model = cell
    return valid_record(rid, method=method, seed=seed, domain=domain, dataset=dataset, model=model,
                        history=history, compute={"flops": curve[-1][0]},
                        timings={"train_s": curve[-1][1], "steps": steps}, budget=budget,
                        overrides={"budget": budget["label"]} if budget else {})


def _budget(ref):
    return {"kind": "flops", "value": 100, "label": "flops=bp", "reference": ref}


def _suite():
    """BP spends 100 FLOPs in 10 s per seed; DFA's steps cost 0.5 as much (20 steps) and take 0.6 the
    time (12 s for its 100 FLOPs); shallow never reaches BP's half-budget level."""
    bp = {s: _record(f"bp{s}", "bp", s, [(50, 5, 0.6 + s / 100), (100, 10, 0.8 + s / 100)]) for s in range(3)}
    dfa = {s: _record(f"dfa{s}", "dfa", s, [(40, 4.8, 0.5), (80, 9.6, 0.7 + s / 50), (100, 12, 0.75 + s / 50)],
                      budget=_budget(f"bp{s}"), steps=20) for s in range(3)}
    shallow = {s: _record(f"sh{s}", "shallow", s, [(100, 3, 0.3)], budget=_budget(f"bp{s}"), steps=40)
               for s in range(3)}
    stray = _record("dfa-unbudgeted", "dfa", 0, [(100, 10, 0.99)])  # pairs with nothing
    return [*bp.values(), *dfa.values(), *shallow.values(), stray]


def _row(rows, method):
    (row,) = [r for r in rows if r["method"] == method]
    return row


def test_quality_at_equal_flops_is_paired_by_seed_with_a_t_interval():
    rows = cr.equal_compute(_suite(), "flops")
    assert {r["method"] for r in rows} == {"bp", "dfa", "shallow"}  # the unbudgeted DFA run is no arm
    dfa = _row(rows, "dfa")
    diffs = [(0.75 + s / 50) - (0.8 + s / 100) for s in range(3)]  # -0.05, -0.04, -0.03
    assert dfa["n"] == 3 and dfa["gap"] == pytest.approx(sum(diffs) / 3)
    assert dfa["half"] == pytest.approx(T975_2 * 0.01 / math.sqrt(3))
    assert dfa["step_ratio"] == pytest.approx(0.5) and dfa["ended_early"] == 0
    assert _row(rows, "bp")["gap"] == 0


def test_quality_at_equal_time_takes_what_was_reached_by_bps_seconds():
    rows = cr.equal_compute(_suite(), "seconds")
    dfa = _row(rows, "dfa")  # by 10 s DFA had evaluated at 4.8 s and 9.6 s
    assert dfa["mean"] == pytest.approx(sum(0.7 + s / 50 for s in range(3)) / 3)
    assert dfa["step_ratio"] == pytest.approx((12 / 20) / (10 / 10))
    assert _row(rows, "shallow")["ended_early"] == 3  # its 3 s were spent before BP's 10 s


def test_time_to_target_scores_a_miss_as_infinity():
    rows = cr.time_to_target(_suite())
    bp, dfa, shallow = (_row(rows, m) for m in ("bp", "dfa", "shallow"))
    assert bp["target"] == pytest.approx(0.61)  # median of BP's values at half its FLOPs: .60 .61 .62
    assert bp["flops_each"] == [100, 50, 50] and bp["flops"] == 50
    assert dfa["flops_each"] == [80, 80, 80] and dfa["seconds"] == pytest.approx(9.6)
    assert shallow["flops_each"] == [math.inf] * 3 and math.isinf(shallow["seconds"])


def test_profiles_and_the_integrated_score_by_hand():
    assert cr.integrated_score([1.0, 2.0, math.inf]) == pytest.approx((3 + 2 + 0) / (3 * 3))
    assert cr.integrated_score([1.0]) == 1 and cr.integrated_score([4.5]) == 0
    assert cr.rho([1.0, 2.0, math.inf], 2.0) == pytest.approx(2 / 3)
    rows = cr.time_to_target(_suite())
    # a second cell where DFA is the fastest: BP takes twice DFA's FLOPs there
    other = ("d", "t", "m")
    bp2 = [_record(f"b2{s}", "bp", s, [(40, 4, 0.5), (80, 8, 0.6), (100, 10, 0.9)], cell=other) for s in range(3)]
    dfa2 = [_record(f"f2{s}", "dfa", s, [(20, 2, 0.9), (100, 12, 0.95)], budget=_budget(f"b2{s}"), cell=other)
            for s in range(3)]
    rows += cr.time_to_target(bp2 + dfa2)
    scores = {(p["group"], p["method"]): p for p in cr.profiles(rows, "flops")}
    # cell 1: bp 50, dfa 80 -> ratios 1, 1.6; cell 2: target .5 (BP by 50 FLOPs) -> bp 40, dfa 20 -> 2, 1
    assert scores[("suite", "bp")]["ratios"] == [1.0, 2.0]
    assert scores[("suite", "dfa")]["score"] == pytest.approx(((4 - 1.6) + (4 - 1)) / (3 * 2))
    assert ("suite", "shallow") not in scores  # shallow was not run on the second cell
    assert ("d", "shallow") not in scores and scores[("d", "dfa")]["cells"] == 2
    assert cr.profile_ratios(rows, "flops", ["d/s/m"])["shallow"] == [math.inf]  # it missed: never within tau


def test_the_table_command_prints_and_writes_the_report(tmp_path, capsys):
    for record in _suite():
        write_record(tmp_path, record)
    assert main(["table", "--results", str(tmp_path), "--at", "flops"]) == 0
    out = capsys.readouterr().out
    assert "| d/s/m | small | flops=bp | dfa | 3 | acc 0.77 | -0.04 ± 0.025 | 0.500 |" in out
    assert "| d/s/m | small | flops=bp | acc 0.61 | shallow | ∞ (∞, ∞, ∞) |" in out
    assert main(["table", "--results", str(tmp_path), "--at", "flops", "--write"]) == 0
    written = sorted(p.name for p in (tmp_path / "compute").rglob("*") if p.is_file())
    assert "README.md" in written and "d-s-m-small-flops-bp-flops.png" in written
    assert "profile-small-flops-bp-seconds.png" in written


def test_the_leaderboard_has_an_equal_compute_page_only_with_budgeted_records(tmp_path):
    from dfabench.leaderboard.html import write_site

    results, plain = tmp_path / "res", tmp_path / "plain"
    for record in _suite():
        write_record(results, record)
    write_record(plain, _record("only-bp", "bp", 0, [(100, 10, 0.8)]))
    pages = write_site([results], tmp_path / "site", tmp_path / "no-baselines")
    assert tmp_path / "site" / "compute.html" in pages
    page = (tmp_path / "site" / "compute.html").read_text()
    assert "<td class=\"num\">-0.04 ± 0.025</td>" in page and page.count("data:image/png;base64,") == 4
    assert 'href="compute.html"' in (tmp_path / "site" / "index.html").read_text()
    pages = write_site([plain], tmp_path / "site2", tmp_path / "no-baselines")
    assert not (tmp_path / "site2" / "compute.html").exists()
    assert 'href="compute.html"' not in (tmp_path / "site2" / "index.html").read_text()


def test_reproduce_writes_the_equal_compute_report_beside_the_paper_tables(tmp_path, capsys):
    import shutil
    from pathlib import Path

    results = tmp_path / "budget"
    shutil.copytree(Path(__file__).resolve().parent.parent / "results" / "budget" / "runs", results / "runs")
    assert main(["reproduce", "--scale", "small", "--domains", "ctr", "--no-run", "--results", str(results)]) == 0
    text = (results / "reproduce" / "compute" / "README.md").read_text()
    assert "| ctr/movielens/dcn | small | flops=bp | dfa | 3 | auc 0.7831 | -6.047e-05 ± 0.0013 | 0.670 |" in text
