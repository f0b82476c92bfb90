"""`dfabench explain`: its numbers are the records' (gaps, intervals, alignment means), its network
facts are those the runs recorded (or the committed side file's), never a rebuilt model's, and its
rank correlation is Spearman's."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import stats

from dfabench.architecture import describe
from dfabench.cli import main
from dfabench.report.explain import explain_frame, rank_correlation, spearman
from dfabench.harness.store import iter_records, write_record
from records import valid_record

BP = [0.90, 0.92, 0.91]
DFA = [0.85, 0.88, 0.84]
SHALLOW = [0.70, 0.71, 0.69]
POINTS = {"net.3": (0.5, 0.4), "net.6": (0.3, 0.2)}  # seed-0 (grad_cos, signal_cos); others shift by seed/100


MLP_FACTS = {"output_dim": 10, "points": {"default": [256, 256]}, "depth": 2, "norm": "none", "placement": "none",
             "convolutions": 0, "parameters": 85002}  # what a run of mlp/digits/mlp records


def _fixture(results, architecture=MLP_FACTS):
    for method, values in (("bp", BP), ("dfa", DFA), ("shallow", SHALLOW)):
        for seed, value in enumerate(values):
            alignment = None
            if method == "dfa":
                alignment = {"epoch": 5, "points": {name: {"grad_cos": g + seed / 100, "signal_cos": c + seed / 100}
                                                    for name, (g, c) in POINTS.items()}}
            write_record(results, valid_record(
                f"{method}{seed}", domain="mlp", dataset="digits", model="mlp", method=method, scale="smoke",
                seed=seed, primary_metric="accuracy", metrics={"val": {"accuracy": value}, "test": {"accuracy": value}},
                alignment=alignment, hparams={"method_options": {}}, architecture=architecture))


def test_explain_numbers_are_the_records(tmp_path):
    _fixture(tmp_path)
    frame = explain_frame(list(iter_records(tmp_path)))
    row = frame[frame.method == "dfa"].iloc[0]
    diffs = [d - b for d, b in zip(DFA, BP)]
    assert row.gap == pytest.approx(statistics.mean(diffs))
    assert row.ci95 == pytest.approx(stats.t.ppf(0.975, 2) * statistics.stdev(diffs) / math.sqrt(3))
    shallow = statistics.mean(s - b for s, b in zip(SHALLOW, BP))
    assert row.shallow_gap == pytest.approx(shallow)
    assert row.lost == pytest.approx(statistics.mean(diffs) / shallow)  # both negative: a share in (0, 1)
    assert 0 < row.lost_low <= row.lost <= row.lost_high < 1 and row.lost_seeds == 3
    # the seeds' mean per point, then the mean over points
    assert row.point_alignment["net.3"]["grad_cos"] == pytest.approx(0.51)
    assert row.grad_cos == pytest.approx((0.51 + 0.31) / 2)
    assert row.signal_cos == pytest.approx((0.41 + 0.21) / 2)
    # the facts the runs recorded: 10 classes, two hidden points of 256, no norm
    assert (row.output_dim, row.depth, row.widths, row.norm, row.placement) == (10, 2, "256-256", "none", "none")
    assert set(frame.method) == {"dfa"}  # the shallow control is a column, not a row


def test_explain_command_writes_report_and_figures(tmp_path):
    _fixture(tmp_path)
    out = tmp_path / "explain"
    assert main(["explain", "--results", str(tmp_path), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    gap = statistics.mean(d - b for d, b in zip(DFA, BP))
    assert f"{gap:+.3g}" in report
    assert "not computed: only 1 cells" in report  # one cell: no correlation claimed
    for name in ("gap_vs_alignment", "gap_vs_output_dim", "gap_vs_shallow"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 1000
    assert main(["explain", "--results", str(tmp_path / "missing")]) == 2


def test_spearman_is_scipys_with_a_bootstrap_interval():
    x = np.arange(10.0)
    y = x ** 3 + np.array([0, 5, -3, 2, 0, 1, -1, 0, 4, 2])
    found = spearman(x.tolist(), y.tolist())
    assert found["rho"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert found["low"] <= found["rho"] <= found["high"]
    # the bootstrap's vectorised statistic is scipy's Spearman, ties included, row by row
    rows = np.random.default_rng(0).integers(0, 4, size=(5, 12)).astype(float), np.random.default_rng(1).normal(size=(5, 12))
    for a, b, rho in zip(*rows, rank_correlation(*rows)):
        assert rho == pytest.approx(stats.spearmanr(a, b).statistic)
    assert spearman([1, 2, 3], [3, 2, 1])["rho"] is None  # too few cells to rank
    assert spearman([1] * 8, list(range(8)))["rho"] is None  # a constant side


def test_describe_reads_norm_placement_off_the_transformers():
    torch = pytest.importorskip("torch")
    from dfabench.tasks.lm.models import PaperTransformer

    ids = torch.randint(0, 300, (2, 8))
    post = PaperTransformer(300, 8, 2, 16, 2, 32, 0.0)
    none = PaperTransformer(300, 8, 2, 16, 2, 32, 0.0, layer_norm=False)
    for model, norm, placement in ((post, "LayerNorm", "post"), (none, "none", "none")):
        facts = describe(model, lambda m=model: m(ids))
        assert (facts["norm"], facts["placement"], facts["output_dim"]) == (norm, placement, 16)
        assert facts["points"] == {"micro": [16, 32, 16, 32], "default": [16, 16]}
    pytest.importorskip("transformers")
    from dfabench.tasks.lm.models import PreLNGPT2

    gpt2 = PreLNGPT2(300, 8, 2, 16, 2, 32, 0.0)
    facts = describe(gpt2, lambda: gpt2(ids))
    assert (facts["placement"], facts["output_dim"], facts["convolutions"]) == ("pre+final", 300, 0)


def test_the_committed_small_report_is_what_its_records_give(tmp_path, monkeypatch):
    """results/small/explain (cited by the README's findings) is rebuilt from the committed records
    exactly: a record added or changed without rebuilding the report fails here."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)  # the report names the folder as given on the command line
    assert main(["explain", "--results", "results/small", "--scale", "small", "--out", str(tmp_path)]) == 0
    for name in ("report.md", "cells.csv"):
        assert (tmp_path / name).read_text() == (root / "results/small/explain" / name).read_text(), name


def test_cells_without_facts_are_listed_and_the_side_file_fills_them(tmp_path, capsys):
    """Records older than run-time facts: explain builds nothing; a cell the side file does not hold is
    named, with why, in the report and on stderr; the side file's entry makes it whole."""
    import json

    results = tmp_path / "results" / "small"
    _fixture(results, architecture=None)
    out = tmp_path / "explain"
    assert main(["explain", "--results", str(results), "--out", str(out)]) == 0
    report, err = (out / "report.md").read_text(), capsys.readouterr().err
    why = "smoke/mlp/digits/mlp: left out of the output-dimension and depth relations: its records predate"
    assert why in report and f"left out: {why}" in err
    assert "nan (nan)" not in report and "unknown: its records predate" in report
    (tmp_path / "results" / "architecture.json").write_text(json.dumps({"smoke/mlp/digits/mlp": MLP_FACTS}))
    assert main(["explain", "--results", str(results), "--out", str(out)]) == 0
    assert "left out" not in capsys.readouterr().err and "predate" not in (out / "report.md").read_text()


BLOCKER = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"recbole", "gensim", "torch_geometric", "transformers", "tokenizers"}:
            raise ImportError(f"{name} hidden by the test")
sys.meta_path.insert(0, Hide())
try:
    import transformers  # noqa: F401
except ImportError:
    pass
else:
    sys.exit(99)  # the hiding failed: the test would prove nothing
from dfabench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_explain_gives_the_same_report_with_the_tasks_libraries_hidden(tmp_path):
    """The committed records, read with and without the optional libraries of the CTR, graph and LM
    tasks: the same report, byte for byte (the relations, the cells, the left-out list)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    reports = []
    for name, code in (("all", "import sys; from dfabench.cli import main; sys.exit(main(sys.argv[1:]))"),
                       ("hidden", BLOCKER)):
        out = tmp_path / name
        done = subprocess.run([sys.executable, "-c", code, "explain", "--results", "results/small", "--scale", "small",
                               "--out", str(out)], cwd=root, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert done.returncode == 0, done.stderr[-2000:]
        reports.append((out / "report.md").read_text())
    assert reports[0] == reports[1]
    assert "output dimension | all cells" in reports[0]
