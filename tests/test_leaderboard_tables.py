"""The leaderboard's tables without a browser: W&B mirrors the site's summary and wide tables (read
back offline), which folders `--results` shows, verification files, and the committed results' site."""
from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dfabench.cli import main
from leaderboard_records import expected_summary, write_baselines, write_fixture

ROOT = Path(__file__).resolve().parent.parent


def test_wandb_mirrors_the_summary_and_wide_tables(tmp_path: Path, monkeypatch):
    pytest.importorskip("wandb")
    from dfabench.leaderboard.wandb_logging import publish_tables
    from dfabench.leaderboard.wandb_readback import read_tables

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    results = write_fixture(tmp_path / "results")
    run_dir, keys = publish_tables([results], write_baselines(tmp_path / "baselines"))
    assert run_dir.parent == results / "wandb"
    tables = read_tables(run_dir)
    assert sorted(tables) == sorted(keys) == ["leaderboard/lm/perplexity", "leaderboard/mlp/accuracy",
                                              "leaderboard/summary"]
    summary = tables["leaderboard/summary"].set_index("method")
    for (method, domain, metric), gap in expected_summary(results).items():
        column = next(c for c in summary.columns if c.startswith(f"{domain} · {metric}") and c.endswith(" gap"))
        assert summary.loc[method, column] == pytest.approx(gap, abs=1e-9), (method, column)
    assert summary.loc["dfa", "mlp · accuracy % ↑ verified"] == "1/2"  # digits re-run and agreed, mnist not
    assert summary.loc["shallow", "lm · perplexity ↓ disputed"] == "1/1"
    mlp = tables["leaderboard/mlp/accuracy"].set_index("cell")
    assert mlp.loc["digits/mlp", "bp"] == "91.0 ± 1.0" and mlp.loc["digits/mlp", "best"] == "bp"
    assert mlp.loc["digits/mlp", "dfa verified"] == "verified" and mlp.loc["mnist/mlp", "dfa verified"] == ""
    assert mlp.loc["digits/mlp", "shallow"] == "61.0 ± 1.4 [1 failed]"
    assert mlp.loc["digits/mlp", "bp mean"] == pytest.approx(91.0)
    assert mlp.loc["digits/mlp", "bp paper"] == "survey (digits): 95.0"
    lm = tables["leaderboard/lm/perplexity"].set_index("cell")
    assert lm.loc["kjv/transformer", "shallow verified"] == "disputed"


def test_results_default_is_the_committed_folder_and_repeating_adds(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no results/small here
    assert main(["leaderboard", "--html", "site"]) == 2
    assert "no results/small here" in capsys.readouterr().err
    mlp = write_fixture(tmp_path / "mine", domains=("mlp",))
    lm = write_fixture(tmp_path / "theirs", domains=("lm",), verification=False)
    assert main(["leaderboard", "--results", str(mlp), "--results", str(lm), "--html", "site"]) == 0
    assert sorted(p.name for p in (tmp_path / "site").iterdir()) == ["index.html", "lm.html", "mlp.html"]
    index = (tmp_path / "site" / "index.html").read_text()
    assert str(mlp) in index and str(lm) in index
    assert main(["leaderboard", "--results", str(lm), "--html", "only"]) == 0  # one --results: that folder only
    assert sorted(p.name for p in (tmp_path / "only").iterdir()) == ["index.html", "lm.html"]


def test_a_verification_file_of_another_shape_is_one_clear_error(tmp_path: Path, capsys):
    results = write_fixture(tmp_path / "results")
    (results / "verification.json").write_text(json.dumps({"records": {"x": {"agree": True}}}))  # no date
    assert main(["leaderboard", "--results", str(results), "--html", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err.strip()
    assert "verification.json: not a verification file" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "site").exists()


class _SummaryCells(HTMLParser):
    """(method, column) -> data-v of every entry of the index's summary table."""

    def __init__(self):
        super().__init__()
        self.columns, self.values, self.row, self.where, self.cell = [], {}, [], None, None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self.where = "summary" if attrs.get("id") == "summary" else None
        elif self.where and tag == "th" and "data-column" in attrs:
            self.columns.append(attrs["data-column"])
        elif self.where and tag == "tr":
            self.row = []
        elif self.where and tag == "td":
            self.cell = {"v": attrs.get("data-v"), "text": ""}
            self.row.append(self.cell)

    def handle_data(self, data):
        if self.cell is not None and self.row and self.cell is self.row[0]:
            self.cell["text"] += data

    def handle_endtag(self, tag):
        if self.where and tag == "tr" and self.row:
            method = self.row[0]["text"].strip()
            for column, cell in zip(self.columns, self.row[1:]):
                self.values[(method, column)] = cell["v"]
        if tag == "td":
            self.cell = None


def test_the_committed_small_results_build_by_default(tmp_path: Path, monkeypatch):
    """`dfabench leaderboard --html DIR` from the repository shows results/small: a page per domain, and
    each summary entry equals the mean paired gap computed here from the committed record files."""
    small = ROOT / "results" / "small"
    monkeypatch.chdir(ROOT)
    assert main(["leaderboard", "--html", str(tmp_path / "site")]) == 0
    domains = {json.loads(p.read_text())["domain"] for p in (small / "runs").glob("*.json")}
    assert sorted(p.stem for p in (tmp_path / "site").glob("*.html")) == sorted(domains | {"index"})
    parser = _SummaryCells()
    parser.feed((tmp_path / "site" / "index.html").read_text())
    expected = expected_summary(small)
    shown = {}
    for (method, column), value in parser.values.items():
        if value not in ("", None, "nan"):
            domain, label = column.split(" · ")[:2]
            shown[(method, domain, label.split()[0])] = float(value)
    assert shown.keys() == expected.keys()
    for key, gap in expected.items():
        assert shown[key] == pytest.approx(gap, abs=1e-9), key


def test_a_folder_without_records_builds_an_index_that_says_so(tmp_path: Path):
    (tmp_path / "results").mkdir()
    assert main(["leaderboard", "--results", str(tmp_path / "results"), "--html", str(tmp_path / "site")]) == 0
    assert [p.name for p in (tmp_path / "site").iterdir()] == ["index.html"]
    assert "No run records in these folders yet." in (tmp_path / "site" / "index.html").read_text()
