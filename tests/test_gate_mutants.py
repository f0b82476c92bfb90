"""The gate's mutation test stays runnable: each mutant's line is in the code exactly once (a moved
line would silently mutate nothing), and each unit test a mutant names exists."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gate_mutants", ROOT / "benchmarks" / "gate_mutants.py")
gate_mutants = importlib.util.module_from_spec(spec)
sys.modules["gate_mutants"] = gate_mutants  # its dataclasses look their module up
spec.loader.exec_module(gate_mutants)


@pytest.mark.parametrize("mutant", gate_mutants.MUTANTS, ids=lambda m: m.name)
def test_each_mutant_changes_one_line_that_is_there(mutant):
    text = (ROOT / mutant.path).read_text()
    assert text.count(mutant.old) == 1, f"{mutant.name}: update the mutant to the code's new form"
    assert mutant.new != mutant.old and mutant.area and mutant.what
    if mutant.unit_test:
        path, _, name = mutant.unit_test.partition("::")
        assert f"def {name}(" in (ROOT / path).read_text(), mutant.unit_test


def test_there_are_at_least_ten_realistic_bugs_across_every_area():
    real = [m for m in gate_mutants.MUTANTS if not m.equivalent]
    assert len(real) >= 10 and len({m.name for m in gate_mutants.MUTANTS}) == len(gate_mutants.MUTANTS)
    assert {m.area for m in real} >= {"engine", "methods", "harness", "optimiser", "task model", "data loader"}
