"""A plain (non-editable) install ships tasks/ and leaderboard/ under the dfabench namespace."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_maps_tasks_under_dfabench(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path), str(ROOT)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("dfabench-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "dfabench/tasks/mlp/task.py" in names
    assert "dfabench/tasks/mlp/hparams.yaml" in names
    assert "dfabench/leaderboard/__init__.py" in names
    assert "dfabench/leaderboard/templates/index.html" in names  # the site's templates are package data
    assert not [n for n in names if n.startswith(("tasks/", "leaderboard/"))]
