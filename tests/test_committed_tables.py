"""The tables the README quotes are what the committed records give: regenerate and compare."""
from __future__ import annotations

from pathlib import Path

import pytest

from dfabench.report.tables import write_tables

ROOT = Path(__file__).resolve().parent.parent
RESULT_SETS = [ROOT / "results" / name for name in ("small", "paper", "smoke")]


@pytest.mark.parametrize("results", [r for r in RESULT_SETS if (r / "tables").is_dir()], ids=lambda p: p.name)
def test_committed_tables_match_the_committed_records(results, tmp_path):
    regenerated = {p.name: p.read_text() for p in write_tables(results, tmp_path, baselines=ROOT / "baselines")}
    committed = {p.name: p.read_text() for p in sorted((results / "tables").iterdir())}
    assert sorted(committed) == sorted(regenerated), "a domain's table is missing or stale: dfabench table --write"
    for name, text in regenerated.items():
        assert committed[name] == text, f"{results.name}/tables/{name} differs from its records: " \
                                        f"run `dfabench table --results results/{results.name} --write`"


def test_committed_paper_tables_match_the_committed_records(tmp_path):
    """results/small/reproduce/*.md (what `dfabench reproduce --scale small --no-run` writes)."""
    from dfabench.report.reproduce import TABLES, plan_suite, write_outputs

    results = ROOT / "results" / "small"
    committed = {p.name: p.read_text() for p in sorted((results / "reproduce").glob("*.md"))}
    domains = sorted(TABLES)
    _, notes = plan_suite(domains, "small", 3)
    regenerated = {p.name: p.read_text() for p in write_outputs(domains, "small", results, ROOT / "baselines", notes,
                                                                 out=tmp_path, figures=False) if p.suffix == ".md"}
    assert sorted(committed) == sorted(regenerated), "run `dfabench reproduce --scale small --no-run`"
    for name, text in regenerated.items():
        assert committed[name] == text, f"results/small/reproduce/{name} is stale: " \
                                        "run `dfabench reproduce --scale small --no-run`"
