"""Records are read defensively (every reader skips a bad one with one warning naming its file, and
resume runs it again) and a run is claimed before it starts (two invocations never run it twice)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dfabench.cli import main
from dfabench.harness.claims import claim_path, try_claim
from dfabench.harness.plan import plan
from dfabench.harness.store import iter_records, write_record
from records import valid_record

ROOT = Path(__file__).resolve().parent.parent
MLP = "mlp/digits/mlp"

BAD = {  # file name -> bytes: what a crash, a disk or a hand can leave in runs/
    "truncated.json": b'{"id": "truncated", "domain": "d", "stat',
    "empty.json": b"",
    "binary.json": bytes(range(256)),
    "typed.json": json.dumps(valid_record("typed", seed="zero")).encode(),
    "stub.json": json.dumps({"id": "stub", "status": "ok"}).encode(),
    "listed.json": b"[1, 2, 3]",
    "renamed.json": json.dumps(valid_record("another-id")).encode(),
    "okless.json": json.dumps(valid_record("okless", metrics={"val": {}, "test": {}})).encode(),
}


def exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as stop:
        return stop.code


def results_with_bad_records(tmp_path) -> Path:
    results = tmp_path / "res"
    for seed in range(2):
        for method, value in (("bp", 0.9), ("dfa", 0.8)):
            write_record(results, valid_record(f"{method}{seed}", method=method, seed=seed,
                                               metrics={"val": {"acc": value}, "test": {"acc": value + seed / 100}}))
    for name, raw in BAD.items():
        (results / "runs" / name).write_bytes(raw)
    return results


def assert_one_warning_per_bad_file(err: str):
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("dfabench: warning: skipping ")]
    for name in BAD:
        assert len([w for w in warnings if f"{name}:" in w]) == 1, (name, warnings)
    assert len(warnings) == len(BAD)


def test_iter_records_yields_only_valid_records(tmp_path, capsys):
    results = results_with_bad_records(tmp_path)
    assert sorted(r["id"] for r in iter_records(results)) == ["bp0", "bp1", "dfa0", "dfa1"]
    assert_one_warning_per_bad_file(capsys.readouterr().err)


@pytest.mark.parametrize("reader", ["table", "table-write", "leaderboard", "baseline+check", "reproduce"])
def test_every_reader_skips_bad_records_with_one_warning_naming_the_file(tmp_path, capsys, reader):
    results = results_with_bad_records(tmp_path)
    if reader == "table":
        assert main(["table", "--results", str(results), "--format", "md"]) == 0
        captured = capsys.readouterr()
        assert "0.905 ± 0.0071 (n=2)" in captured.out  # bp's two valid records, and nothing else
        assert_one_warning_per_bad_file(captured.err)
        return
    elif reader == "table-write":
        assert main(["table", "--results", str(results), "--write", "--baselines", str(ROOT / "baselines")]) == 0
        assert (results / "tables" / "d.md").exists()
    elif reader == "leaderboard":
        assert main(["leaderboard", "--results", str(results), "--html", str(tmp_path / "site")]) == 0
        assert (tmp_path / "site" / "d.html").exists()
    elif reader == "baseline+check":
        baselines = tmp_path / "baselines"
        assert main(["baseline", "record", "--scale", "small", "--results", str(results),
                     "--baselines", str(baselines)]) == 0
        assert_one_warning_per_bad_file(capsys.readouterr().err)
        assert main(["check", "--scale", "small", "--no-run", "--results", str(results),
                     "--baselines", str(baselines)]) == 0
        assert "check: ok" in capsys.readouterr().out
        return
    else:
        assert main(["reproduce", "--scale", "small", "--no-run", "--domains", "mlp", "--results", str(results),
                     "--baselines", str(ROOT / "baselines")]) == 0
    assert_one_warning_per_bad_file(capsys.readouterr().err)


def test_the_table_counts_only_the_valid_records(tmp_path, capsys):
    results = results_with_bad_records(tmp_path)
    assert main(["table", "--results", str(results), "--format", "csv"]) == 0
    out = capsys.readouterr().out
    assert ",bp,acc," in out and ",2,0," in out  # n=2 ok runs per method, none failed: the stub is no run


def test_resume_runs_again_what_a_bad_record_stands_for(tmp_path, capsys):
    results = tmp_path / "res"
    runs, _ = plan([MLP], ["bp", "dfa"], "smoke", [0])
    stub, corrupt = (results / "runs" / f"{r.id}.json" for r in runs)
    stub.parent.mkdir(parents=True)
    stub.write_text(json.dumps({"id": runs[0].id, "status": "ok"}))  # a stub is not a finished run
    corrupt.write_text('{"id": "' + runs[1].id + '", "status": "ok", "metr')
    assert main(["run", MLP, "--method", "bp,dfa", "--scale", "smoke", "--results", str(results)]) == 0
    err = capsys.readouterr().err
    assert "2 runs planned, 0 already recorded" in err
    assert str(stub) in err and str(corrupt) in err and "Traceback" not in err
    assert sorted(r["id"] for r in iter_records(results)) == sorted(r.id for r in runs)
    assert all(r["status"] == "ok" for r in iter_records(results))


# -- claims ------------------------------------------------------------------------------------------
def test_a_claim_is_exclusive_released_and_stale_once_its_process_is_gone(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from dfabench.harness.claims import try_claim
        claim = try_claim({str(tmp_path)!r}, "abc")
        print("held" if claim else "refused", flush=True)
        time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert try_claim(tmp_path, "abc") is None  # another live process holds it
        assert json.loads(claim_path(tmp_path, "abc").read_text())["pid"] == holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)  # no clean-up runs: the file stays, the lock goes
        holder.wait()
    assert claim_path(tmp_path, "abc").exists()
    claim = try_claim(tmp_path, "abc")
    assert claim is not None
    assert json.loads(claim_path(tmp_path, "abc").read_text())["pid"] == os.getpid()
    claim.release()
    assert not claim_path(tmp_path, "abc").exists()


COUNTING_CLI = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    import dfabench.harness.executor as executor
    from dfabench.cli import main
    from dfabench.task import all_tasks

    all_tasks()  # the slow imports first, so that the barrier below starts both suites together
    ready = Path(os.environ["EXECUTIONS"] + f".ready-{os.getpid()}")
    ready.touch()
    deadline = time.time() + 120
    while len(list(ready.parent.glob("*.ready-*"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    real = executor.run_one
    def counting(run, *args, **kwargs):
        with open(os.environ["EXECUTIONS"], "a") as log:  # O_APPEND: lines from both processes stay whole
            log.write(f"{run.id} {os.getpid()}\\n")
        time.sleep(0.3)  # so that the two invocations contend for the same runs
        return real(run, *args, **kwargs)
    executor.run_one = counting
    sys.exit(main(sys.argv[1:]))
    """)


def test_two_invocations_on_one_results_folder_never_run_the_same_run_twice(tmp_path):
    results, log = tmp_path / "res", tmp_path / "executions.log"
    env = {**os.environ, "EXECUTIONS": str(log), "TQDM_DISABLE": "1"}
    base = [sys.executable, "-c", COUNTING_CLI, "run", "--scale", "smoke", "--results", str(results)]
    # the same runs in the same order from both (the worst case), and two only the second asks for
    first = subprocess.Popen(base + [MLP, "--method", "bp,dfa", "--seeds", "2"], env=env, cwd=ROOT,
                             stderr=subprocess.PIPE, text=True)
    second = subprocess.Popen(base + [MLP, "--method", "bp,dfa", "--seeds", "3"], env=env, cwd=ROOT,
                              stderr=subprocess.PIPE, text=True)
    errs = [p.communicate(timeout=300)[1] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, errs
    executed = [line.split() for line in log.read_text().splitlines()]
    ids = [run_id for run_id, _ in executed]
    assert len(ids) == len(set(ids)) == 6  # 2 methods x 3 seeds, each exactly once
    assert len({pid for _, pid in executed}) == 2  # both did some of the work
    records = list(iter_records(results))
    assert sorted(r["id"] for r in records) == sorted(ids) and all(r["status"] == "ok" for r in records)
    assert not list((results / "runs").glob(".claim-*"))  # every claim released
