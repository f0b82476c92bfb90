"""The leaderboard: W&B offline logging read back equals the records; the static HTML site works."""
from __future__ import annotations

import os
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


CHROMIUM = "/usr/bin/chromium"


def test_html_site_in_headless_chromium(results: Path, tmp_path: Path):
    from PIL import Image

    (results / "mlp").mkdir()  # an image a task saved beside the records (NeRF's comparison strips)
    Image.new("RGB", (40, 10), (200, 30, 30)).save(results / "mlp" / "digits_seed0.png")
    site = tmp_path / "site"
    assert main(["leaderboard", "--results", str(results), "--html", str(site)]) == 0
    page_html = (site / "mlp.html").read_text()
    assert "0.905" in page_html and "<svg" in page_html  # bp mean over seeds, a learning curve
    assert page_html.count("<rect") == 2 and "class='gaps'" in page_html  # dfa and shallow gap bars
    if not os.path.exists(CHROMIUM):
        pytest.skip("Debian chromium not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((site / "index.html").as_uri())
        page.click("text=mlp")
        page.wait_for_load_state()
        methods = lambda: page.eval_on_selector_all("table.sortable >> nth=0 >> tbody tr",
                                                    "rows => rows.map(r => r.cells[3].textContent)")
        mean_header = page.locator("table.sortable").first.locator("th", has_text="mean")
        mean_header.click()
        assert methods() == ["shallow", "dfa", "bp"]  # ascending mean
        mean_header.click()
        assert methods() == ["bp", "dfa", "shallow"]
        sizes = page.eval_on_selector_all("svg", "els => els.map(e => e.getBoundingClientRect().width)")
        assert sizes and all(w > 0 for w in sizes)
        images = page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])")
        assert images == [[True, 40]]  # decoded from the inlined PNG
        assert errors == []
        browser.close()


def test_published_numbers_table_marks_unknown_cells():
    from dfabench.published import published_rows as _paper_rows

    paper = {"ctr/criteo/dcn": {"source": "Table 2", "metrics": {"auc": "higher"},
                                "bp": {"auc": 0.81036}, "dfa": "unknown"},
             "graph/cora/gcn": "unknown"}
    assert _paper_rows(paper, "ctr") == [["ctr/criteo/dcn", "bp", "auc", 0.81036, "Table 2"],
                                         ["ctr/criteo/dcn", "dfa", "", "unknown", "Table 2"]]
    assert _paper_rows(paper, "graph") == [["graph/cora/gcn", "all", "", "unknown", ""]]


def test_published_section_puts_our_same_cell_numbers_beside_the_source(tmp_path):
    from dfabench.published import load_published, published_markdown

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
    assert f"href='{odd.name}'" in index
