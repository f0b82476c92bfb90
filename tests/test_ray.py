"""The Ray executor writes the same records as the local one; a small tune run writes valid values."""
from pathlib import Path

import pytest
import torch
import yaml

ray = pytest.importorskip("ray")

from dfabench.harness.executor import run_local  # noqa: E402
from dfabench.harness.plan import plan  # noqa: E402
from dfabench.harness.ray_executor import run_ray  # noqa: E402
from dfabench.hparams import load_rules, resolve  # noqa: E402
from dfabench.task import all_tasks  # noqa: E402
from dfabench.tune import tune_command  # noqa: E402

CELL = "mlp/digits/mlp"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_executor_matches_local_executor(tmp_path, local_ray):
    runs, _ = plan([CELL], ["bp", "dfa"], "smoke", [0])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what a 1-CPU Ray task uses
    try:
        local = {r["id"]: r for r in run_local(runs, tmp_path / "local")}
    finally:
        torch.set_num_threads(threads)
    remote = {r["id"]: r for r in run_ray(runs, tmp_path / "ray")}
    assert set(local) == set(remote) == {r.id for r in runs}
    for run_id, record in local.items():
        assert remote[run_id]["status"] == "ok"
        assert remote[run_id]["metrics"] == record["metrics"]
    assert sorted(p.name for p in (tmp_path / "ray" / "runs").iterdir()) == \
        sorted(p.name for p in (tmp_path / "local" / "runs").iterdir())
    # resuming under Ray skips what is recorded
    assert run_ray(runs, tmp_path / "ray") == []


def test_small_tune_run_writes_valid_tuned_values(tmp_path, local_ray):
    output = tmp_path / "tuned.yaml"
    tune_command([CELL], "dfa", "smoke", samples=2, search="random", seeds=1, output=str(output),
                 storage=tmp_path / "tune", overrides={"epochs": 2})
    rules = load_rules(output)
    assert len(rules) == 1
    rule = rules[0]
    assert rule["when"] == {"scale": "smoke", "method": "dfa", "dataset": "digits", "model": "mlp"}
    assert set(rule["set"]) == {"lr", "dropout", "batch_size"}
    assert 1e-4 <= rule["set"]["lr"] <= 1e-2 and rule["set"]["dropout"] in (0.0, 0.1, 0.3)
    provenance = rule["provenance"]
    assert provenance["samples"] == 2 and provenance["seeds"] == [0] and 0 < provenance["score"] <= 1
    assert {"space", "date", "commit", "search"} <= set(provenance)
    # the written values are valid hyper-parameters of the task
    task = all_tasks()["mlp"]
    hp = resolve(task, scale="smoke", method="dfa", dataset="digits", model="mlp", overrides=rule["set"])
    assert hp.lr == rule["set"]["lr"]
    yaml.safe_load(Path(output).read_text())


def test_ray_executor_leaves_a_run_another_invocation_holds_to_it(tmp_path, local_ray):
    import subprocess
    import sys
    import textwrap

    runs, _ = plan([CELL], ["bp", "dfa"], "smoke", [0])
    results = tmp_path / "ray"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from dfabench.harness.claims import try_claim
        claim = try_claim({str(results)!r}, {runs[0].id!r})
        print("held" if claim else "refused", flush=True)
        time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert [r["id"] for r in run_ray(runs, results)] == [runs[1].id]
    finally:
        holder.kill()
        holder.wait()
    assert not (results / "runs" / f".claim-{runs[1].id}").exists()  # its own claim released
