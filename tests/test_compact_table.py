"""`dfabench table --format compact` (the README's form): its numbers are the records', and every
README results table is exactly what the command it names prints from the committed records."""
from __future__ import annotations

import re
import shlex
import statistics
from pathlib import Path

from scipy import stats

from dfabench.cli import main
from dfabench.harness.store import write_record
from tests.records import valid_record

ROOT = Path(__file__).resolve().parents[1]


def make_record(*, dataset: str, method: str, seed: int, value: float, **cell) -> dict:
    return valid_record(f"{dataset}-{method}-{seed}", **cell, dataset=dataset, method=method, seed=seed,
                        primary_metric="accuracy", metrics={"val": {"accuracy": value}, "test": {"accuracy": value}})


def _rows(text: str) -> list[dict[str, str]]:
    lines = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|:")]
    header = [v.strip() for v in lines[0].strip("|").split("|")]
    return [dict(zip(header, (v.strip() for v in line.strip("|").split("|")))) for line in lines[1:]]


def test_compact_rows_are_the_records_in_points(tmp_path, capsys):
    accuracy = {"bp": [0.90, 0.92, 0.91], "dfa": [0.85, 0.88, 0.86], "shallow": [0.70, 0.71, 0.69]}
    for method, values in accuracy.items():
        for seed, value in enumerate(values):
            write_record(tmp_path, make_record(domain="mlp", dataset="digits", model="mlp", method=method,
                                               seed=seed, value=value))
    write_record(tmp_path, make_record(domain="mlp", dataset="digits", model="mlp", method="fa", seed=0,
                                       value=0.8))
    assert main(["table", "--results", str(tmp_path), "--format", "compact", "--cell", "mlp/digits/*"]) == 0
    (row,) = _rows(capsys.readouterr().out)
    assert row["cell"] == "mlp/digits/mlp" and row["metric"] == "accuracy % ↑" and row["n"] == "3"
    for method, column in (("bp", "BP"), ("dfa", "DFA"), ("shallow", "shallow")):
        values = [100 * v for v in accuracy[method]]
        assert row[column] == f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}"
    assert row["others"] == "fa: 80.0 (n=1)"
    diff = [100 * (d - b) for d, b in zip(accuracy["dfa"], accuracy["bp"])]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(diff) / 3 ** 0.5
    assert row["DFA − BP (95% CI)"] == f"{statistics.mean(diff):+.1f} ± {half:.1f}".replace("-", "−")


def test_cell_filter_keeps_only_matching_cells(tmp_path, capsys):
    for dataset in ("digits", "mnist"):
        write_record(tmp_path, make_record(domain="mlp", dataset=dataset, model="mlp", method="bp", seed=0,
                                           value=0.9))
    assert main(["table", "--results", str(tmp_path), "--format", "compact", "--cell", "mlp/mnist/*"]) == 0
    assert [r["cell"] for r in _rows(capsys.readouterr().out)] == ["mlp/mnist/mlp"]
def quoted_tables() -> list[tuple[str, list[str], str]]:
    """(file, the table command's arguments, what it quotes) for every generated table block of the README
    and of docs/results.md: `<!-- table: dfabench ARGS -->` above a fenced block (or a markdown table)."""
    found = []
    for name in ("README.md", "docs/results.md"):
        text = (ROOT / name).read_text()
        for args, fenced, table in re.findall(r"<!-- table: dfabench (.+?) -->\n(?:```\n(.*?)```\n|((?:\|.*\n)+))",
                                              text, flags=re.S):
            found.append((name, shlex.split(args), fenced or table))
    return found


def test_readme_tables_are_what_their_commands_print(capsys, monkeypatch):
    tables = quoted_tables()
    assert any(name == "README.md" for name, _, _ in tables), "the README's headline table is a generated block"
    monkeypatch.chdir(ROOT)
    for name, args, table in tables:
        assert main(args) == 0
        assert capsys.readouterr().out == table, f"{name}: table of `dfabench {shlex.join(args)}` differs; re-run it"


def test_a_cell_filter_that_keeps_nothing_is_refused(tmp_path, capsys):
    write_record(tmp_path, make_record(domain="mlp", dataset="digits", model="mlp", method="bp", seed=0, value=0.9))
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["table", "--results", str(tmp_path), "--cell", "mlp/mnsit/*"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dfabench: error: --cell mlp/mnsit/* matches no record in {tmp_path}/runs"]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
