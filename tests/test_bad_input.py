"""The contract for bad input: exit 2, exactly one line on stderr, nothing written; and exit 1 after a
grouped summary when a run of the invocation ended in `error`."""
from __future__ import annotations

from pathlib import Path

import pytest

from dfabench.cli import main

MLP = "mlp/digits/mlp"


def exit_code(argv) -> int:
    try:
        return main(argv)
    except SystemExit as stop:  # argparse's own errors
        return stop.code


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*")) if path.exists() else []


def refused(capsys, argv, message, results: Path | None = None):
    """Run argv; assert exit 2, one stderr line containing message, and (when given) no results folder."""
    code = exit_code(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1, err
    assert message in err[0]
    if results is not None:
        assert not results.exists()
    return err[0]


@pytest.mark.parametrize("extra, message", [
    (["--method", ","], "no method given"),
    (["--method", " , "], "no method given"),
    (["--seeds", "100000000000"], "seeds"),
    (["--set", "epochs=1000000000000"], "epochs: Input should be less than or equal to 100000"),
    (["--set", "steps_per_epoch=100000000000"], "steps_per_epoch"),
])
def test_bad_run_options_are_refused(tmp_path, capsys, extra, message):
    results = tmp_path / "res"
    refused(capsys, ["run", MLP, "--scale", "smoke", "--results", str(results)] + extra, message, results)


def test_a_method_that_applies_to_no_planned_cell_is_refused(tmp_path, capsys):
    results = tmp_path / "res"
    line = refused(capsys, ["run", "ctr/synthetic/lr", "ctr/synthetic/fm", "--method", "dfa", "--scale", "smoke",
                            "--results", str(results)], "nothing to run", results)
    assert "BP only" in line


def test_a_config_whose_set_is_not_a_mapping_is_refused(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(f"selectors: ['{MLP}']\nscale: smoke\nset: [1, 2]\n")
    results = tmp_path / "res"
    refused(capsys, ["run", "--config", str(config), "--set", "epochs=1", "--results", str(results)],
            "set must be a mapping", results)


def test_results_that_is_a_file_or_under_a_file_is_refused_before_anything_trains(tmp_path, capsys):
    a_file = tmp_path / "taken"
    a_file.write_text("not a folder")
    for results, message in ((a_file, "is a file"), (a_file / "sub", "is a file")):
        refused(capsys, ["run", MLP, "--scale", "smoke", "--results", str(results)], message)
    assert a_file.read_text() == "not a folder" and files_under(tmp_path) == [a_file]


def test_unwritable_results_is_refused(tmp_path, capsys, monkeypatch):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # the tests may run as root, for whom chmod does not stop writes: fake the answer instead
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == locked else real_access(p, mode))
    refused(capsys, ["run", MLP, "--scale", "smoke", "--results", str(locked / "res")], "is not writable")
    assert files_under(locked) == []


def test_table_on_a_missing_results_folder_is_refused(tmp_path, capsys):
    refused(capsys, ["table", "--results", str(tmp_path / "nope")], "no such folder", tmp_path / "nope")
    refused(capsys, ["table", "--results", str(tmp_path / "nope"), "--write"], "no such folder", tmp_path / "nope")


def test_leaderboard_html_on_an_existing_file_is_refused(tmp_path, capsys):
    from records import valid_record

    from dfabench.harness.store import write_record

    write_record(tmp_path / "res", valid_record())
    site = tmp_path / "site.html"
    site.write_text("mine")
    refused(capsys, ["leaderboard", "--results", str(tmp_path / "res"), "--html", str(site)], "is a file")
    refused(capsys, ["leaderboard", "--results", str(tmp_path / "res"), "--html", str(site / "sub")], "is a file")
    assert site.read_text() == "mine"
    refused(capsys, ["leaderboard", "--results", str(tmp_path / "nope"), "--html", str(tmp_path / "out")],
            "no such folder", tmp_path / "out")


def test_tune_with_an_unknown_method_is_refused(tmp_path, capsys):
    refused(capsys, ["tune", MLP, "--method", "teleport", "--scale", "smoke", "--results", str(tmp_path / "res")],
            "unknown method 'teleport'", tmp_path / "res")


def test_missing_optional_data_is_refused_before_training_and_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    import dfabench.data.images as images
    from dfabench.tasks.mlp import task as mlp_task

    monkeypatch.setattr(images, "DEBIAN_FASHION_MNIST", tmp_path / "no-such-package")
    mlp_task._images.cache_clear()
    mlp_task._prepared.cache_clear()
    results = tmp_path / "res"
    try:
        line = refused(capsys, ["run", "mlp/*/mlp", "--method", "bp", "--scale", "smoke", "--results", str(results)],
                       "mlp/fashion-mnist", results)
    finally:
        mlp_task._images.cache_clear()
        mlp_task._prepared.cache_clear()
    assert "apt-get install dataset-fashion-mnist" in line


def test_a_fault_during_training_is_an_error_record_and_exit_1_after_a_grouped_summary(tmp_path, capsys, monkeypatch):
    from dfabench.task import all_tasks

    task_class = type(all_tasks()["mlp"])

    def broken_loss(self, output, batch, model, hp):
        raise RuntimeError("the loss broke")

    monkeypatch.setattr(task_class, "loss", broken_loss)
    results = tmp_path / "res"
    code = exit_code(["run", MLP, "--method", "bp,dfa", "--scale", "smoke", "--seeds", "2", "--results", str(results)])
    err = capsys.readouterr().err
    assert code == 1
    causes = [line for line in err.splitlines() if line.startswith("error in ")]
    assert causes == [next(line for line in causes)]  # one line for the one cause
    assert causes[0].startswith("error in 4 run(s): RuntimeError: the loss broke (")
    assert "4 of 4 runs ended in error" in err
    from dfabench.harness.store import iter_records

    assert sorted(r["status"] for r in iter_records(results)) == ["error"] * 4


def test_a_run_with_nothing_wrong_exits_0(tmp_path, capsys):
    assert main(["run", MLP, "--method", "bp", "--scale", "smoke", "--results", str(tmp_path / "res")]) == 0
    assert "error" not in capsys.readouterr().err


def test_tune_checks_the_data_before_any_trial(tmp_path, capsys):
    pytest.importorskip("ray")
    refused(capsys, ["tune", "graph/custom/gcn", "--method", "dfa", "--scale", "smoke", "--results",
                     str(tmp_path / "res"), "--set", f"path={tmp_path / 'nowhere'}"], "does not exist", tmp_path / "res")
