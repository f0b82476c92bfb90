"""`dfabench reproduce`: the suite it plans, the numbers its tables show (ours from the records, the
published ones from baselines/, 'unknown' where there are none) and the figures it writes."""
from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path

from dfabench.report import reproduce
from dfabench.cli import main
from dfabench.harness.store import iter_records, write_record
from dfabench.task import all_tasks

BASELINES = str(Path(__file__).resolve().parent.parent / "baselines")
PNG = b"\x89PNG"


def markdown_rows(path: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    """{(dataset, model, metric name): {column: text}} of the table in a reproduce markdown file."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("|")]
    split = lambda line: [c.strip() for c in line.strip("|").split("|")]
    header = split(lines[0])
    rows = [dict(zip(header, split(line))) for line in lines[2:]]
    return {(r["dataset"], r["model"], r["metric"].split()[0]): r for r in rows}


def assert_pngs(figures: Path, *names: str) -> None:
    for name in names:
        data = (figures / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 1000, name


def test_reproduce_runs_what_is_missing_and_tables_hold_the_records(tmp_path, monkeypatch, capsys):
    # one cell keeps the test to seconds; the planning of every cell is checked below
    monkeypatch.setitem(reproduce.TABLES, "mlp", replace(reproduce.TABLES["mlp"], cells="digits/*"))
    results = tmp_path / "res"
    args = ["reproduce", "--scale", "smoke", "--domains", "mlp", "--seeds", "2", "--results", str(results),
            "--baselines", BASELINES]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "6 runs planned, 0 already recorded" in err
    out = results / "reproduce"
    for path in ("mlp.md", "mlp.tex", "figures/mlp_curves.png", "figures/mlp_alignment.png"):
        assert f"wrote {out / path}" in err

    records = list(iter_records(results))
    assert sorted((r["method"], r["seed"]) for r in records) == [(m, s) for m in ("bp", "dfa", "shallow")
                                                                   for s in (0, 1)]
    acc = {(r["method"], r["seed"]): r["metrics"]["test"]["accuracy"] for r in records}
    row = markdown_rows(out / "mlp.md")[("digits", "mlp", "accuracy")]
    bp = [acc["bp", s] for s in (0, 1)]
    assert row["BP"].strip("*") == f"{statistics.mean(bp):.4g} ± {statistics.stdev(bp):.2g} (n=2)"
    gap = statistics.mean(acc["dfa", s] - acc["bp", s] for s in (0, 1))
    assert row["DFA − BP (95% CI)"].startswith(f"{gap:+.3g} ± ")
    assert row["survey BP"] == row["survey DFA"] == row["survey shallow"] == "unknown"
    assert "shallow − BP (95% CI)" not in row
    assert (out / "mlp.tex").read_text().startswith(r"\begin{tabular}")
    assert_pngs(out / "figures", "mlp_curves.png", "mlp_alignment.png")

    assert main(args) == 0  # everything recorded: nothing runs again
    assert "6 runs planned, 6 already recorded in" in capsys.readouterr().err


def test_the_suite_is_every_offline_cell_with_the_papers_methods():
    runs, notes = reproduce.plan_suite(["mlp", "ctr"], "smoke", 2)
    for domain in ("mlp", "ctr"):
        task = all_tasks()[domain]
        offline = {f"{domain}/{d}/{m}" for d, m in task.cells()
                   if d not in task.explicit_datasets and m not in task.explicit_models}  # no probe's cells
        assert {r.cell for r in runs if r.domain == domain} == offline
    assert {r.method for r in runs} == {"bp", "dfa", "shallow"} and {r.seed for r in runs} == {0, 1}
    assert not [r for r in runs if r.model in ("fm", "lr") and r.method != "bp"]
    assert "ctr/synthetic/fm: dfa does not apply (fm has no hidden layer to give feedback to: BP only)" in notes
    lm, _ = reproduce.plan_suite(["lm"], "paper", 1)
    assert {r.method for r in lm} == {"bp", "dfa", "dfa-micro", "shallow"}


def fake_record(domain: str, dataset: str, model: str, method: str, seed: int, test: dict[str, float],
                primary: str, higher: bool) -> dict:
    """What the tables and figures read of a record: identity, status, test metrics and history."""
    history = [{"epoch": e, "val": {primary: test[primary] * (0.8 + 0.1 * e)},
                **({"alignment": {"mean_grad_cos": 0.2 * e}} if method != "bp" else {})} for e in (1, 2)]
    return {"id": f"{dataset}-{model}-{method}-{seed}", "scale": "small", "domain": domain, "dataset": dataset,
            "model": model, "method": method, "seed": seed, "status": "ok", "primary_metric": primary,
            "higher_is_better": higher, "metrics": {"test": test}, "history": history}


def test_ctr_table_puts_the_papers_criteo_numbers_beside_ours(tmp_path, capsys):
    results = tmp_path / "res"
    auc = {("deepfm", "bp"): [0.80, 0.82], ("deepfm", "dfa"): [0.79, 0.80], ("deepfm", "shallow"): [0.75, 0.76],
           ("fm", "bp"): [0.77, 0.78], ("dcnv2", "bp"): [0.81, 0.83]}
    for (model, method), values in auc.items():
        for seed, value in enumerate(values):
            write_record(results, fake_record("ctr", "synthetic", model, method, seed,
                                              {"auc": value, "logloss": 1 - value}, "auc", True))
    assert main(["reproduce", "--scale", "small", "--domains", "ctr", "--no-run", "--results", str(results),
                 "--baselines", BASELINES]) == 0
    assert "runs planned" not in capsys.readouterr().err  # --no-run trains nothing
    out = results / "reproduce"
    rows = markdown_rows(out / "table2_ctr.md")
    assert list(rows) == [("synthetic", m, metric) for m in ("fm", "deepfm", "dcnv2") for metric in ("auc", "logloss")]

    deepfm = rows["synthetic", "deepfm", "auc"]
    assert deepfm["BP"].strip("*") == "0.81 ± 0.014 (n=2)"
    assert deepfm["DFA"] == "0.795 ± 0.0071 (n=2)"
    assert deepfm["DFA − BP (95% CI)"].startswith("-0.015 ± ")
    assert deepfm["published for"] == "criteo/deepfm"
    assert (deepfm["paper (Criteo) BP"], deepfm["paper (Criteo) DFA"], deepfm["paper (Criteo) shallow"]) == \
           ("0.79536", "0.79558", "0.79202")
    assert rows["synthetic", "deepfm", "logloss"]["paper (Criteo) BP"] == "0.46104"
    assert rows["synthetic", "deepfm", "logloss"]["BP"].strip("*") == "0.19 ± 0.014 (n=2)"
    fm = rows["synthetic", "fm", "auc"]
    assert (fm["DFA"], fm["paper (Criteo) BP"], fm["paper (Criteo) DFA"]) == ("—", "0.79148", "unknown")
    dcnv2 = rows["synthetic", "dcnv2", "auc"]  # not in the paper
    assert (dcnv2["published for"], dcnv2["paper (Criteo) BP"]) == ("—", "unknown")

    tex = (out / "table2_ctr.tex").read_text()
    assert "paper (Criteo) BP" in tex and r"$\pm$" in tex and "0.79536" in tex
    assert_pngs(out / "figures", "ctr_curves.png", "ctr_alignment.png")


def test_lm_table_shows_test_and_validation_perplexity_the_unigram_floor_and_the_papers_validation_numbers(tmp_path):
    results = tmp_path / "res"
    for model in ("transformer", "gpt2-preln"):
        for method, ppl in (("bp", 100.0), ("dfa", 300.0), ("dfa-micro", 280.0), ("shallow", 250.0)):
            record = fake_record("lm", "kjv", model, method, 0, {"perplexity": ppl}, "perplexity", False)
            record["metrics"]["val"] = {"perplexity": ppl - 5, "epoch": 2}
            record["extras"] = {"floors": {"perplexity": {"value": 365.0, "what": "unigram", "higher_is_better": False}},
                                "val_floors": {"perplexity": {"value": 360.0, "what": "unigram",
                                                              "higher_is_better": False}}}
            write_record(results, record)
    assert main(["reproduce", "--scale", "small", "--domains", "lm", "--no-run", "--results", str(results),
                 "--baselines", BASELINES]) == 0
    rows = markdown_rows(results / "reproduce" / "table5_lm.md")
    assert list(rows) == [("kjv", m, metric) for m in ("transformer", "gpt2-preln")
                          for metric in ("perplexity", "val:perplexity")]
    test, val = rows["kjv", "transformer", "perplexity"], rows["kjv", "transformer", "val:perplexity"]
    assert test["BP"] == "**100 (n=1)**" and test["DFA macro"] == "300 (n=1)" and test["DFA micro"] == "280 (n=1)"
    assert val["BP"] == "**95 (n=1)**" and val["DFA macro"] == "295 (n=1)"
    assert (test["floor"], val["floor"]) == ("365", "360")
    assert (test["DFA macro − shallow (95% CI)"], test["DFA micro − shallow (95% CI)"]) == ("+50", "+30")
    # the paper reports validation perplexity: its numbers sit on the validation row
    assert (val["paper (WikiText-103) BP"], val["paper (WikiText-103) DFA macro"],
            val["paper (WikiText-103) DFA micro"], val["paper (WikiText-103) shallow"]) == ("29.8", "52.0", "93.3",
                                                                                           "unknown")
    assert test["paper (WikiText-103) BP"] == "unknown"
    assert rows["kjv", "gpt2-preln", "val:perplexity"]["published for"] == "—"  # no published pre-LN number


def test_bad_domain_or_scale_is_one_line_and_exit_2(tmp_path, capsys):
    results = tmp_path / "res"
    assert main(["reproduce", "--scale", "smoke", "--domains", "mlp,nope", "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dfabench: error: unknown domain 'nope'; known: ctr, graph")
    assert main(["reproduce", "--scale", "huge", "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["dfabench: error: unknown scale 'huge'; known: smoke, small, paper, gate"]
    assert not results.exists()


def test_vision_table_puts_biotorchs_errors_beside_ours(tmp_path):
    results = tmp_path / "res"
    for model in ("lenet", "resnet"):
        write_record(results, fake_record("vision", "digits", model, "bp", 0, {"accuracy": 0.9, "top1_error": 10.0},
                                          "accuracy", True))
    assert main(["reproduce", "--scale", "small", "--domains", "vision", "--no-run", "--results", str(results),
                 "--baselines", BASELINES]) == 0
    rows = markdown_rows(results / "reproduce" / "vision.md")
    column = "biotorch (CIFAR-10, Fashion-MNIST)"
    lenet, resnet = rows["digits", "lenet", "top1_error"], rows["digits", "resnet", "top1_error"]
    assert (lenet["published for"], lenet[f"{column} BP"], lenet[f"{column} DFA"]) == ("fashion-mnist/lenet", "9.2",
                                                                                      "12.81")
    assert resnet["published for"].startswith("cifar10/resnet") and resnet[f"{column} BP"] == "10.01"
    assert lenet[f"{column} DFA head"] == lenet[f"{column} shallow"] == "unknown"
