"""Where a number came from: code version, library versions, machine."""
from __future__ import annotations

import functools
import os
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy
import torch

import dfabench


# What a run writes, not what it computes: records in a results folder of the checkout (committed ones
# among them) do not make the code differ from its commit.
NOT_CODE = (":(exclude)results",)


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """Commit and dirty flag of the checkout dfabench runs from (None when installed from a wheel).

    A copy of the tree without ``.git`` (shipped to a cluster or a GPU box) can carry them in
    ``DFABENCH_GIT_COMMIT`` and ``DFABENCH_GIT_DIRTY`` (0/1), set where the checkout is.
    """
    if os.environ.get("DFABENCH_GIT_COMMIT"):
        return {"commit": os.environ["DFABENCH_GIT_COMMIT"],
                "dirty": os.environ.get("DFABENCH_GIT_DIRTY", "") not in ("", "0", "false")}
    return checkout_state(Path(dfabench.__file__).resolve().parent.parent)


def checkout_state(root: Path) -> dict[str, Any]:
    """The commit of the git checkout at ``root`` and whether its tracked files differ from it, records
    under ``results/`` aside."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                 ".", *NOT_CODE], capture_output=True, text=True, timeout=10, check=True).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=1)
def cpu_identity() -> dict[str, str | None]:
    """The processor's model and the instruction set torch's CPU kernels dispatch to: two machines with
    the same versions but other processors (AVX2 against AVX-512 kernels) round differently, and a
    training run that diverges from that is a new draw, not the same run (docs/records.md)."""
    model = None
    try:
        with open("/proc/cpuinfo") as info:
            model = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), None)
    except OSError:
        pass
    return {"model": model or platform.processor() or None, "capability": torch.backends.cpu.get_cpu_capability()}


def provenance(device: torch.device, data_fingerprint: str) -> dict[str, Any]:
    return {
        **git_state(),
        "cpu": cpu_identity(),
        "versions": {"dfabench": dfabench.__version__, "python": platform.python_version(),
                     "torch": torch.__version__, "numpy": numpy.__version__},
        "device": describe_device(device),
        "host": platform.node(),
        "command": " ".join(Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv)),
        "data_fingerprint": data_fingerprint,
    }


def peak_memory_mb(device: torch.device) -> tuple[float, str]:
    """Peak memory and what it measures: CUDA allocations on a GPU, the process's max RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_max_rss"
