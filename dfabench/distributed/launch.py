"""Start one process per stage and run a function in each, inside a ``torch.distributed`` group.

gloo on CPU, NCCL on CUDA (rank r on GPU r). The group meets through a file in a temporary folder
(no port to find). Each process gets ``threads`` intra-op threads (one core per stage by default).
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, world: int, store: str, backend: str, threads: int, fn: Callable, args: tuple):
    torch.set_num_threads(threads)
    dist.init_process_group(backend, init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)
        fn(rank, world, *args)
    finally:
        dist.destroy_process_group()


def run(fn: Callable, world: int, *args, device: str = "cpu", threads: int = 1, start: str = "spawn") -> None:
    """``fn(rank, world, *args)`` in ``world`` processes; raises if any of them fails.

    ``start="spawn"`` (the default) gives fresh processes, so ``fn`` must be importable by name;
    ``"fork"`` saves each process the import of torch (the tests use it; CPU only, and safe here
    because every process runs with the intra-op thread count set before any parallel region)."""
    backend = "nccl" if device.startswith("cuda") else "gloo"
    with tempfile.TemporaryDirectory() as folder:
        store = os.path.join(folder, "store")
        mp.start_processes(_entry, args=(world, store, backend, threads, fn, args), nprocs=world,
                           join=True, start_method=start)
