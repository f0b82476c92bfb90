"""A benchmark script's bad arguments: one line on stderr, exit 2, nothing measured and nothing written."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def assert_refused(script: str, guarded: str, argv: list[str], says: str, tmp_path, capsys, monkeypatch) -> None:
    """``benchmarks/<script>.py argv`` must stop at parsing: ``guarded`` (the function that would measure)
    is never called, the error is the one line ``<script>.py: error: <says>``, and no --out file appears."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    module = importlib.import_module(script)
    out = tmp_path / f"{script}.txt"
    argv = [a.format(tmp=tmp_path) for a in argv]
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *argv, *(["--out", str(out)] if "--out" not in argv else [])])
    monkeypatch.setattr(module, guarded, lambda *a, **k: pytest.fail("measured despite bad arguments"))
    with pytest.raises(SystemExit) as stop:
        module.main()
    assert stop.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"{script}.py: error: {says.format(tmp=tmp_path)}"]
    assert not out.exists() and not (tmp_path / "missing").exists()
