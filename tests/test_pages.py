"""The generated pages (docs/results.md, docs/engine.md) are what their sources give, and the check fails
when they are not."""
from __future__ import annotations

import shutil
from pathlib import Path

import dfabench
from dfabench.cli import main
from dfabench.report.pages import ENGINE_PAGE, RESULTS_PAGE, engine_page, results_page

ROOT = Path(dfabench.__file__).resolve().parent.parent


def test_the_committed_pages_are_what_their_sources_give():
    assert (ROOT / RESULTS_PAGE).read_text() == results_page(ROOT), "run `dfabench docs`"
    assert (ROOT / ENGINE_PAGE).read_text() == engine_page(ROOT), "run `dfabench docs`"


def test_every_benchmark_output_is_on_the_engine_page():
    page = engine_page(ROOT)
    for path in (ROOT / "results/bench").glob("*.txt"):
        assert path.read_text().rstrip("\n") in page, path.name


def test_check_fails_on_a_stale_page_and_docs_mends_it(tmp_path, capsys):
    for folder in ("results/quickstart", "results/bench"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / "docs").mkdir()
    assert main(["docs", "--root", str(tmp_path)]) == 0
    assert main(["docs", "--root", str(tmp_path), "--check"]) == 0
    bench = tmp_path / "results/bench/engine-overhead.txt"
    bench.write_text(bench.read_text().replace("0", "9", 1))  # a re-measured benchmark, page not rebuilt
    assert main(["docs", "--root", str(tmp_path), "--check"]) == 1
    assert "stale:" in capsys.readouterr().err
    assert main(["docs", "--root", str(tmp_path)]) == 0
    assert main(["docs", "--root", str(tmp_path), "--check"]) == 0


def test_docs_outside_a_repository_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["docs", "--root", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().count("\n") == 0
