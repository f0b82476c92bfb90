"""`dfabench table`'s default layout: its numbers are the records' numbers, in the field's units."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

from scipy import stats

from dfabench.catalog import specs
from dfabench.cli import main
from dfabench.report.glance import UNITS, _decimals
from dfabench.harness.store import write_record

SMALL = Path(__file__).resolve().parents[1] / "results" / "small"


def parse_blocks(text: str) -> dict[str, list[dict[str, str]]]:
    """domain -> rows (the cell carried down where the table leaves it blank)."""
    blocks, domain, header, cell = {}, None, None, ""
    for line in text.splitlines():
        if " · " in line and not line.startswith("|"):
            domain, header = line.split(" · ")[0], None
            blocks[domain] = []
        elif line.startswith("|") and not line.startswith("|:"):
            values = [v.strip() for v in line.strip("|").split("|")]
            if header is None:
                header = values
                continue
            row = dict(zip(header, values))
            cell = row["cell"] or cell
            blocks[domain].append({**row, "cell": cell})
    return blocks


def _records(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((directory / "runs").glob("*.json"))]


def test_committed_small_table_numbers_are_the_records(capsys):
    assert main(["table", "--results", str(SMALL)]) == 0
    blocks = parse_blocks(capsys.readouterr().out)
    records = [r for r in _records(SMALL) if r["status"] == "ok"]
    checked = 0
    for domain, rows in blocks.items():
        for row in rows:
            if row["method"] == "floor":  # the records' trivial level: test_gaps_units... checks it
                continue
            dataset, model = row["cell"].split("/")
            mine = [r for r in records if (r["domain"], r["dataset"], r["model"], r["method"]) ==
                    (domain, dataset, model, row["method"])]
            for column, text in row.items():
                metric = column.split()[0]
                if " − BP" in column or not text or metric not in mine[0]["metrics"]["test"]:
                    continue
                factor = UNITS.get(metric, (1.0, ""))[0]  # points for accuracy/AUC, as quoted
                values = [r["metrics"]["test"][metric] for r in mine]
                bp = [r["metrics"]["test"][metric] for r in records
                      if (r["domain"], r["dataset"], r["model"], r["method"]) == (domain, dataset, model, "bp")]
                digits = _decimals(factor * statistics.mean(bp))
                shown = [float(part) for part in text.strip("*").split(" ± ")]
                truth = [factor * statistics.mean(values)] + ([factor * statistics.stdev(values)]
                                                               if len(values) > 1 else [])
                # equal to the records' mean and std, up to the rounding of the last digit shown
                assert len(shown) == len(truth), (domain, row["cell"], row["method"], column)
                for got, want in zip(shown, truth):
                    assert abs(got - want) <= 0.5 * 10 ** -digits + 1e-9, (domain, row["cell"], row["method"], column)
                checked += 1
    shown = {(r["domain"], r["dataset"], r["model"], r["method"], m) for r in records
             for m in specs()[r["domain"]].table_metrics or (r["primary_metric"],)}
    assert checked == len(shown)  # every cell, method and metric of results/small, none left out


def test_gaps_units_throughput_and_headline_order(tmp_path, capsys):
    accuracy = {"bp": [0.90, 0.92, 0.91], "dfa": [0.86, 0.89, 0.87]}
    for cell in ("digits/mlp", "fashion-mnist/mlp"):  # the spec declares fashion-mnist/mlp first
        dataset, model = cell.split("/")
        for method, values in accuracy.items():
            for seed, value in enumerate(values):
                write_record(tmp_path, {
                    "id": f"{dataset}{method}{seed}", "domain": "mlp", "dataset": dataset, "model": model,
                    "method": method, "scale": "small", "seed": seed, "status": "ok", "primary_metric": "accuracy",
                    "higher_is_better": True, "metrics": {"test": {"accuracy": value}},
                    "extras": {"floors": {"accuracy": {"value": 0.1, "what": "chance", "higher_is_better": True}}},
                    "timings": {"step_ms": 2.0, "train_items_per_s": 1000.0 * (seed + 1), "item_unit": "samples"}})
    assert main(["table", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    title = out.splitlines()[0]
    assert title.startswith("mlp · small") and "n = 3 seeds" in title  # constant columns go to the title
    rows = parse_blocks(out)["mlp"]
    assert [r["cell"] for r in rows] == ["fashion-mnist/mlp"] * 3 + ["digits/mlp"] * 3
    assert rows[2]["method"] == "floor" and rows[2]["accuracy % ↑"] == "10.0"  # chance, in points
    dfa = rows[1]
    assert dfa["accuracy % ↑"] == "87.3 ± 1.5"  # points, not fractions
    diff = [100 * (d - b) for d, b in zip(accuracy["dfa"], accuracy["bp"])]
    half = stats.t.ppf(0.975, 2) * statistics.stdev(diff) / 3 ** 0.5
    assert dfa["accuracy − BP"] == f"−{abs(statistics.mean(diff)):.1f} ± {half:.1f}"
    assert dfa["throughput"] == "2,000 samples/s"  # the mean of the records' train_items_per_s
    assert rows[0]["accuracy % ↑"] == "**91.0 ± 1.0**"  # the best method in bold


def test_csv_keeps_the_long_form(tmp_path, capsys):
    for seed, value in enumerate((0.5, 0.7)):
        write_record(tmp_path, {"id": f"r{seed}", "domain": "mlp", "dataset": "digits", "model": "mlp",
                                "method": "bp", "scale": "smoke", "seed": seed, "status": "ok",
                                "primary_metric": "accuracy", "higher_is_better": True,
                                "metrics": {"test": {"accuracy": value}}})
    assert main(["table", "--results", str(tmp_path), "--format", "csv"]) == 0
    header, row = capsys.readouterr().out.splitlines()[:2]
    assert header.startswith("scale,domain,dataset,model,") and ",0.6," in row  # a fraction, as stored


def test_the_quickstart_table_in_the_readme_is_what_its_records_give(capsys):
    quickstart = SMALL.parent / "quickstart"
    assert main(["table", "--results", str(quickstart)]) == 0
    assert capsys.readouterr().out == (quickstart / "table.md").read_text()


def test_runs_with_other_overrides_or_a_duplicated_seed_are_kept_apart(tmp_path, capsys):
    def record(name, method, seed, value, overrides=None):
        write_record(tmp_path, {"id": name, "domain": "mlp", "dataset": "digits", "model": "mlp", "method": method,
                                "scale": "small", "seed": seed, "status": "ok", "primary_metric": "accuracy",
                                "higher_is_better": True, "metrics": {"test": {"accuracy": value}},
                                **({"overrides": overrides} if overrides else {})})

    for seed in range(2):
        record(f"bp{seed}", "bp", seed, 0.9)
        record(f"dfa{seed}", "dfa", seed, 0.8)
    record("dfa-hot", "dfa", 0, 0.1, overrides={"lr": 1e6})  # another run: its own row, never averaged in
    record("dfa0-again", "dfa", 0, 0.7)  # the same seed twice: not paired with BP
    assert main(["table", "--results", str(tmp_path)]) == 0
    rows = parse_blocks(capsys.readouterr().out)["mlp"]
    plain = [r for r in rows if r["variant"] == "" and r["method"] == "dfa"]
    hot = [r for r in rows if "lr=1000000.0" in r["variant"]]
    assert len(plain) == 1 and plain[0]["accuracy − BP"] == "not paired: seed 0 recorded twice"
    assert len(hot) == 1 and hot[0]["accuracy % ↑"] == "10.0" and hot[0]["cell"] == "digits/mlp"


def test_top1_error_is_recorded_in_percent_and_shown_as_such(tmp_path, capsys):
    for seed, error in enumerate((14.0, 14.2)):
        write_record(tmp_path, {"id": f"e{seed}", "domain": "vision", "dataset": "digits", "model": "lenet",
                                "method": "bp", "scale": "small", "seed": seed, "status": "ok",
                                "primary_metric": "accuracy", "higher_is_better": True,
                                "metrics": {"test": {"accuracy": 1 - error / 100, "top1_error": error}}})
    assert main(["table", "--results", str(tmp_path), "--metric", "top1_error"]) == 0
    (row,) = parse_blocks(capsys.readouterr().out)["vision"]
    assert row["top1_error % ↓"] == "14.1 ± 0.1"  # not 1410: the records hold it in % already


def test_the_summary_lines_are_the_kept_shares_the_record_files_give(capsys):
    """Each block's summary: per method the median over cells of the share of BP's advantage over the
    shallow control kept (computed in tests/leaderboard_records.py from the JSON files alone), the
    findings cells on their own line; within the rounding of the two digits shown."""
    import re

    from leaderboard_records import expected_summary

    assert main(["table", "--results", str(SMALL)]) == 0
    expected = expected_summary(SMALL)
    seen = 0
    domain = None
    for line in capsys.readouterr().out.splitlines():
        if " · " in line and not line.startswith("|"):
            domain = line.split(" · ")[0]
        found = re.match(r"(Summary|Findings cells, apart) \((\w+)\): .*?: (.*)$", line)
        if not found:
            continue
        name = domain + (" findings" if found.group(1) != "Summary" else "")
        for method, value in re.findall(r"([\w-]+) (-?[0-9.]+) \[", found.group(3)):
            assert abs(float(value) - expected[(method, name, found.group(2))]) <= 0.005 + 1e-9, (name, method)
            seen += 1
    assert seen == len([k for k in expected if k[0] not in ("bp", "shallow")])  # every method's share, once
    assert ("dfa", "lm findings", "perplexity") in expected and ("dfa", "lm", "perplexity") in expected
