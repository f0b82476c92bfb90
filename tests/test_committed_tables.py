"""The tables the README quotes are what the committed records give: regenerate and compare."""
from __future__ import annotations

from pathlib import Path

import pytest

from dfabench.tables import write_tables

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
