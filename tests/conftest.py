import pytest
import torch


@pytest.fixture(autouse=True)
def _small_threads():
    # Tests are small; two threads keep them deterministic and quick on the 2-core CI machine.
    torch.set_num_threads(2)
    yield


@pytest.fixture(autouse=True)
def _no_wandb(monkeypatch):
    # A developer's DFABENCH_WANDB must not make the tests log runs; tests that exercise W&B set it.
    monkeypatch.delenv("DFABENCH_WANDB", raising=False)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    yield
