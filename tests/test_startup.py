"""dfabench/startup.py: `run` starts with the garbage collector paused and trains with it on."""
import gc

import pytest

from dfabench import startup
from dfabench.cli import main


@pytest.fixture(autouse=True)
def _collector_restored():
    was = gc.isenabled()
    yield
    startup._paused = False
    (gc.enable if was else gc.disable)()


def test_pause_then_resume_turns_the_collector_off_then_on_once():
    gc.enable()
    startup.pause()
    assert not gc.isenabled()
    startup.resume()
    assert gc.isenabled()
    gc.disable()
    startup.resume()  # a second resume does nothing: the pause is over
    assert not gc.isenabled()


def test_a_collector_the_user_turned_off_stays_off():
    gc.disable()
    startup.pause()
    startup.resume()
    assert not gc.isenabled()


def test_a_run_trains_with_the_collector_on_and_leaves_it_on(tmp_path, monkeypatch):
    import dfabench.harness.runner as runner

    seen = []
    real = runner.training_step

    def watched(*args, **kwargs):
        step = real(*args, **kwargs)
        seen.append(gc.isenabled())  # built: the pause must still be on
        return lambda batch: (seen.append(gc.isenabled()), step(batch))[1]

    monkeypatch.setattr(runner, "training_step", watched)
    gc.enable()
    assert main(["run", "mlp/digits/mlp", "--method", "dfa", "--scale", "smoke", "--results", str(tmp_path),
                 "--set", "epochs=1"]) == 0
    assert seen[0] is False and len(seen) > 2 and all(seen[1:])
    assert gc.isenabled()


def test_a_refused_run_leaves_the_collector_on(tmp_path):
    gc.enable()
    assert main(["run", "mlp/nosuch/mlp", "--results", str(tmp_path)]) == 2
    assert gc.isenabled()
