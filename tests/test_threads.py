"""The thread rule: no more intra-op threads than free cores, a thread count the user sets kept."""
from __future__ import annotations

import pytest
import torch
from bench_cli import assert_refused

from dfabench.harness import threads


def test_rule_takes_whole_free_cores_within_the_cap():
    assert threads.choose(2, 2.0) == 2
    assert threads.choose(2, 1.1) == 1  # one core busy elsewhere: one thread, not two waiting on each other
    assert threads.choose(2, 0.0) == 1  # at least one
    assert threads.choose(4, 3.7) == 4
    assert threads.choose(1, 8.0) == 1


def test_apply_measures_unless_the_user_set_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setattr(threads, "_last", None)
        monkeypatch.setattr(threads, "free_cores", lambda: 1.0)
        assert threads.apply(cap=2) == 1 and torch.get_num_threads() == 1
        monkeypatch.setattr(threads, "_last", None)
        monkeypatch.setattr(threads, "free_cores", lambda: 2.0)
        assert threads.apply(cap=2) == 2 and torch.get_num_threads() == 2
        torch.set_num_threads(1)  # a caller's own count is a cap: the rule never raises it
        monkeypatch.setattr(threads, "_last", None)
        assert threads.apply() == 1
        torch.set_num_threads(3)
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        monkeypatch.setattr(threads, "free_cores", lambda: 0.0)
        assert threads.apply() == 3 and torch.get_num_threads() == 3  # the user's choice stands
    finally:
        torch.set_num_threads(before)


def test_free_cores_is_a_fraction_of_the_cores_here():
    free = threads.free_cores()
    assert 0.0 <= free <= len(threads._cores()) + 1e-9


def test_local_runs_start_under_the_rule(monkeypatch, tmp_path):
    """The executor applies the rule before each CPU run: one free core of two, one thread."""
    from dfabench.harness import executor
    from dfabench.harness.plan import plan

    class Started(Exception):
        pass

    def fake_run_one(*args, **kwargs):
        raise Started(torch.get_num_threads())

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "_last", None)
    monkeypatch.setattr(threads, "free_cores", lambda: 1.0)
    monkeypatch.setattr(executor, "run_one", fake_run_one)
    runs, _ = plan(["mlp/digits/mlp"], ["bp"], "smoke", [0])
    torch.set_num_threads(2)
    try:
        try:
            executor.run_local(runs, tmp_path)
        except Started as started:
            assert started.args[0] == 1
        else:
            raise AssertionError("run_one was not reached")
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("argv, says", [
    (["--repeat", "0"], "argument --repeat: 0 is below 1"),
    (["--out", "{tmp}/missing/under.txt"], "--out {tmp}/missing/under.txt: folder {tmp}/missing does not exist"),
])
def test_the_under_load_benchmark_refuses_bad_arguments_before_running(argv, says, tmp_path, capsys, monkeypatch):
    assert_refused("under_load", "arm", argv, says, tmp_path, capsys, monkeypatch)
