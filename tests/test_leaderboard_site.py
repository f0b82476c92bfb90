"""The leaderboard: W&B offline logging read back equals the records; the static HTML site works."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dfabench.cli import main
from dfabench.harness.store import write_record


def _record(method: str, seed: int, acc: float) -> dict:
    history = [{"epoch": e, "lr": 0.01, "step": 10 * e, "train_loss": 1.0 / e, "time_s": 0.1,
                "val": {"accuracy": acc - 0.1 / e, "loss": 0.5 / e}} for e in (1, 2, 3)]
    return {"id": f"{method}{seed}", "scale": "smoke", "domain": "mlp", "dataset": "digits", "model": "mlp",
            "method": method, "seed": seed, "status": "ok", "primary_metric": "accuracy", "higher_is_better": True,
            "hparams": {"lr": 0.01, "epochs": 3}, "history": history,
            "metrics": {"val": {"accuracy": acc - 0.03, "loss": 0.2}, "test": {"accuracy": acc, "loss": 0.25}}}


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    for method, base in (("bp", 0.9), ("dfa", 0.8), ("shallow", 0.6)):
        for seed in (0, 1):
            write_record(tmp_path, _record(method, seed, base + 0.01 * seed))
    return tmp_path


def test_wandb_offline_run_matches_record(results: Path, monkeypatch):
    pytest.importorskip("wandb")
    from dfabench.leaderboard.wandb_logging import log_record
    from dfabench.leaderboard.wandb_readback import read_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    record = _record("dfa", 0, 0.8)
    run_dir = log_record(record, results)
    assert run_dir.parent == results / "wandb"
    logged = read_run(run_dir)
    assert [row["epoch"] for row in logged["history"]] == [1, 2, 3]
    for row, h in zip(logged["history"], record["history"]):
        assert row["train_loss"] == pytest.approx(h["train_loss"])
        assert row["val/accuracy"] == pytest.approx(h["val"]["accuracy"])
    assert logged["summary"]["test/accuracy"] == pytest.approx(0.8)
    assert logged["summary"]["test/loss"] == pytest.approx(0.25)
    assert logged["config"]["method"] == "dfa" and logged["config"]["record_id"] == "dfa0"


def test_leaderboard_without_wandb_is_a_clear_error(results: Path, monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb":
            raise ImportError("no wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    assert main(["leaderboard", "--results", str(results), "--wandb"]) != 0
    assert "wandb is not installed" in capsys.readouterr().err


from dfabench.leaderboard.screenshot import CHROMIUM, launch  # Debian's chromium (`dfabench data install`)


def _column_values(page, table: str, column: int, what: str = "textContent") -> list:
    return page.eval_on_selector_all(f"{table} tbody tr", f"rows => rows.filter(r => !r.hidden).map(r => "
                                     f"r.cells[{column}].{what})")


def test_html_site_in_headless_chromium(tmp_path: Path):
    """The summary's numbers equal what the record files give (computed here with pandas), its columns
    sort, rows filter, the wide domain table shows units, bold, failures, paper and verified marks; a
    screenshot of each page goes under the test's folder."""
    from PIL import Image

    from leaderboard_records import VERIFIED, expected_summary, write_baselines, write_fixture

    results = write_fixture(tmp_path / "results")
    (results / "mlp").mkdir()  # an image a task saved beside the records (NeRF's comparison strips)
    Image.new("RGB", (40, 10), (200, 30, 30)).save(results / "mlp" / "digits_seed0.png")
    site = tmp_path / "site"
    assert main(["leaderboard", "--results", str(results), "--html", str(site),
                 "--baselines", str(write_baselines(tmp_path / "baselines"))]) == 0
    assert sorted(p.name for p in site.iterdir()) == ["index.html", "lm.html", "mlp.html"]
    expected = expected_summary(results)
    mlp_gaps = {m: v for (m, d, _), v in expected.items() if d == "mlp"}
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium not installed (dfabench data install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    screens = tmp_path / "screens"
    with sync_api.sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((site / "index.html").as_uri())
        page.screenshot(path=str(screens / "index.png"), full_page=True)

        # the summary: one row per method, one column per domain; each entry the median kept share
        headers = page.eval_on_selector_all("#summary thead th", "ths => ths.map(th => th.dataset.column || '')")
        methods = _column_values(page, "#summary", 0)
        assert sorted(methods) == ["bp", "dfa", "shallow"]
        for col, key in enumerate(headers[1:], start=1):
            domain, label = key.split(" · ")
            metric = label.split()[0]
            values = _column_values(page, "#summary", col, "dataset.v")
            for method, value in zip(methods, values):
                assert float(value) == pytest.approx(expected[(method, domain, metric)], abs=1e-9), (method, key)
        texts = dict(zip(methods, _column_values(page, "#summary", headers.index("mlp · accuracy % ↑"))))
        assert texts["dfa"].startswith(f"{mlp_gaps['dfa']:.2f} [")  # the kept share and its interval
        assert "2 cells · 2–3 seeds" in texts["shallow"]  # shallow's digits seed 2 diverged: 2 pairs there
        lm = dict(zip(methods, _column_values(page, "#summary", headers.index("lm · perplexity ↓"), "className")))
        assert "worse" in lm["dfa"]  # its kept share's interval lies below 1: red
        facts = page.inner_text("dl.facts")
        assert "1 of 9 entries verified" in facts and "1 disputed" in facts and str(results) in facts
        assert f"{len(VERIFIED)} runs re-run on 2026-12-01" in facts

        # sorting: by the mlp column (numbers), both ways, then filtering
        mlp_header = page.locator("#summary thead th").nth(headers.index("mlp · accuracy % ↑"))
        mlp_header.click()
        assert _column_values(page, "#summary", 0) == sorted(mlp_gaps, key=mlp_gaps.get)
        mlp_header.click()
        assert _column_values(page, "#summary", 0) == sorted(mlp_gaps, key=mlp_gaps.get, reverse=True)
        page.fill("input[data-filter='summary']", "sha")
        assert _column_values(page, "#summary", 0) == ["shallow"]

        # a domain page: rows = cells, columns = methods, in the metric's units
        page.click("nav >> text=mlp")
        page.wait_for_load_state()
        page.screenshot(path=str(screens / "mlp.png"), full_page=True)
        table = "#t0-table"
        columns = page.eval_on_selector_all(f"{table} thead th", "ths => ths.map(th => th.textContent)")
        assert columns == ["cell", "bp", "dfa", "shallow"]
        from dfabench.catalog import specs

        cells = _column_values(page, table, 0)
        declared = [f"{d}/{m}" for d, m in specs()["mlp"].cells()]
        assert cells == sorted(cells, key=declared.index)  # the mlp task's own cell order
        bp = dict(zip(cells, _column_values(page, table, 1)))
        assert bp["digits/mlp"].startswith("91.0 ± 1.0")  # points: mean ± std of 0.90, 0.92, 0.91
        assert "survey (digits): 95.0" in bp["digits/mlp"]  # the published 0.95 in points ('survey': reproduce's label)
        assert page.eval_on_selector_all(f"{table} td.best", "tds => tds.map(td => td.cellIndex)") == [1, 1]
        shallow = dict(zip(cells, _column_values(page, table, 3)))
        assert "[1 failed]" in shallow["digits/mlp"] and "vs BP" in shallow["digits/mlp"]
        marks = page.eval_on_selector_all(f"{table} .mark", "ms => ms.map(m => [m.className, m.title])")
        assert marks == [["mark verified", "verified 2026-12-01: 2 of 3 runs re-run, all agree"]]
        dfa_header = page.locator(f"{table} thead th", has_text="dfa")
        dfa_header.click()  # by dfa's mean: digits (86.3) below mnist (91.7)
        assert _column_values(page, table, 0) == ["digits/mlp", "mnist/mlp"]
        dfa_header.click()
        assert _column_values(page, table, 0) == ["mnist/mlp", "digits/mlp"]
        sizes = page.eval_on_selector_all("svg", "els => els.map(e => e.getBoundingClientRect().width)")
        assert len(sizes) == 3 and all(w > 0 for w in sizes)  # the gap bars, a curve per cell
        assert page.locator("svg.gaps rect").count() == 4  # dfa and shallow in both cells
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        assert images == [[True, 40]]  # decoded from the inlined PNG

        page.click("nav >> text=lm")
        page.wait_for_load_state()
        page.screenshot(path=str(screens / "lm.png"), full_page=True)
        marks = page.eval_on_selector_all("#t0-table .mark", "ms => ms.map(m => m.className)")
        assert marks == ["mark disputed"]  # shallow's seed 0 re-ran to another number
        assert errors == []
        browser.close()
    assert all((screens / f"{name}.png").stat().st_size > 10_000 for name in ("index", "mlp", "lm"))


def test_published_numbers_table_marks_unknown_cells():
    from dfabench.report.published import published_rows as _paper_rows

    paper = {"ctr/criteo/dcn": {"source": "Table 2", "metrics": {"auc": "higher"},
                                "bp": {"auc": 0.81036}, "dfa": "unknown"},
             "graph/cora/gcn": "unknown"}
    assert _paper_rows(paper, "ctr") == [["ctr/criteo/dcn", "bp", "auc", 0.81036, "Table 2"],
                                         ["ctr/criteo/dcn", "dfa", "", "unknown", "Table 2"]]
    assert _paper_rows(paper, "graph") == [["graph/cora/gcn", "all", "", "unknown", ""]]


def test_published_section_puts_our_same_cell_numbers_beside_the_source(tmp_path):
    from dfabench.report.published import load_published, published_markdown

    (tmp_path / "paper.yaml").write_text("lm/wikitext-103/transformer: {source: T5, bp: {perplexity: 29.8}}\n")
    (tmp_path / "biotorch.yaml").write_text(
        "vision/fashion-mnist/lenet: {source: biotorch, bp: {top1_error: 9.2}, dfa: {top1_error: 12.81}}\n")
    published = load_published(tmp_path)  # both files merged
    ours = [{"domain": "vision", "dataset": "fashion-mnist", "model": "lenet", "method": "bp", "status": status,
             "metrics": {"test": {"top1_error": value, "accuracy": 1 - value / 100}}}
            for value, status in ((10.0, "ok"), (12.0, "ok"), (90.0, "diverged"))]
    text = published_markdown(published, "vision", ours)
    rows = {line.split("|")[2].strip(): [c.strip() for c in line.split("|")[1:-1]]
            for line in text.splitlines() if line.startswith("| vision/")}
    assert rows["bp"][3:5] == ["9.2", "11 ± 1.4 (n=2)"]  # mean and std of the ok runs only
    assert rows["dfa"][3:5] == ["12.81", "not run"]
    assert "29.8" not in text and published_markdown(published, "graph", ours) == ""


@pytest.mark.parametrize("domain", ["../../x", "a/b", "..", ".hidden", "/abs/olute"])
def test_a_record_s_domain_never_names_a_page_outside_the_site(tmp_path, domain):
    results = tmp_path / "deep" / "res"
    write_record(results, {**_record("bp", 0, 0.9), "domain": domain})
    write_record(results, _record("bp", 1, 0.9))
    site = tmp_path / "deep" / "site" / "inner"
    assert main(["leaderboard", "--results", str(results), "--html", str(site)]) == 0
    pages = sorted(p for p in tmp_path.rglob("*.html"))
    assert all(p.parent == site for p in pages)  # nothing above or beside the site's folder
    assert len(pages) == 3 and (site / "mlp.html").exists()  # index, mlp, and the odd domain's slugged page
    index = (site / "index.html").read_text()
    odd = next(p for p in pages if p.name not in ("index.html", "mlp.html"))
    assert f'href="{odd.name}"' in index
