import pytest
import torch


@pytest.fixture(autouse=True)
def _small_threads():
    # Tests are small; two threads keep them deterministic and quick on the 2-core CI machine.
    torch.set_num_threads(2)
    yield
