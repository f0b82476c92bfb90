"""What a task declares, and the hyper-parameters every task shares.

A task is one folder under ``tasks/`` (installed as ``dfabench.tasks.<domain>``) whose ``task.py``
defines a ``Task`` subclass and calls ``register_task``, plus its spec ``tasks/<domain>/spec.py``
(``dfabench.catalog``): its datasets, its models (a model may be a named variant: the same network
with other hyper-parameters), its metrics with their direction and which is primary. A
``hparams.yaml`` beside the task holds the tuned values per scale, method, dataset and model, each
with its provenance.

The harness owns the training loop (see ``dfabench.harness.runner``); the task supplies the pieces:
``load_data`` -> ``build_model`` -> ``train_batches`` / ``forward`` / ``loss`` -> ``evaluate``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, ClassVar, Iterable, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer
from torch import nn

from .catalog import SCALES, Metric, TaskSpec, load_class, register_spec, specs, unavailable_reason  # noqa: F401

MAX_EPOCHS = 100_000
MAX_STEPS_PER_EPOCH = 10_000_000


class TrainHParams(BaseModel):
    """Hyper-parameters every task understands. Tasks subclass it to add their own; strict."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # Stated limits (README): far beyond any budget here, they refuse a typo that would train forever.
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)
    batch_size: int = Field(128, ge=1)
    steps_per_epoch: int | None = Field(None, ge=1, le=MAX_STEPS_PER_EPOCH, description="cap on optimiser steps per epoch")
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float = Field(0.0, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["none", "step", "cosine", "plateau", "noam", "exponential", "warmup"] = "none"
    step_size: int = Field(2, ge=1, description="epochs between decays for schedule=step")
    gamma: float = Field(0.1, gt=0, description="decay factor for step and plateau schedules; for exponential, "
                         "the factor over the whole run (lr ends at lr * gamma)")
    plateau_patience: int = Field(1, ge=0)
    warmup_steps: int = Field(4000, ge=1, description="for schedule=noam and schedule=warmup")
    grad_clip: float | None = Field(None, gt=0)
    patience: int | None = Field(None, ge=1, description="early stopping: evaluations without improvement")
    eval_every: int = Field(1, ge=1, description="epochs between validation passes")
    alignment_every: int = Field(1, ge=0, description="epochs between alignment probes; 0 disables")
    time_limit_s: float | None = Field(None, gt=0)
    method_options: dict[str, Any] = Field(default_factory=dict)
    capture: bool = Field(False, description="capture the training step (CUDA graph; torch.compile on a CPU); "
                          "dfabench run --compile")

    @model_serializer(mode="wrap")
    def _without_default_capture(self, handler):
        # capture is left out of the dump (so of run ids) unless set: ids recorded before it existed stay valid
        data = handler(self)
        if isinstance(data, dict) and not self.capture:
            data.pop("capture", None)
        return data


def _from_spec(name: str) -> property:
    return property(lambda self: getattr(self.spec, name), doc=f"the spec's {name} (catalog.TaskSpec)")


class Task:
    """Base class of a task. See the module docstring.

    What a task offers (datasets, models, cells, metrics, which methods apply) is its spec,
    ``tasks/<domain>/spec.py`` (``dfabench.catalog``), so that it is known without importing the
    task; the properties below read it. A task class may still declare them itself.
    """

    domain: ClassVar[str]
    HParams: ClassVar[type[TrainHParams]] = TrainHParams

    @property
    def spec(self) -> TaskSpec:
        return specs()[self.domain]

    # -- catalogue (from the spec) --------------------------------------------------------------
    datasets = _from_spec("datasets")  # name -> one-line description
    models = _from_spec("models")  # a model may be a named variant: other hyper-parameters
    metrics = _from_spec("metrics")
    primary_metric = _from_spec("primary_metric")
    table_metrics = _from_spec("table_metrics")
    explicit_datasets = _from_spec("explicit_datasets")
    explicit_models = _from_spec("explicit_models")
    bp_only_models = _from_spec("bp_only_models")
    point_tags = _from_spec("point_tags")
    capabilities = _from_spec("capabilities")

    # Hyper-parameters that say where a user's data is (a file or folder). Their value is a place on
    # one machine: it never enters a run id or a record; the content fingerprint of the data does.
    data_location_fields: ClassVar[frozenset[str]] = frozenset({"data_dir", "path", "root"})
    # Where a task caches what it generates (procedural scenes): not data, not identity, not recorded.
    cache_location_fields: ClassVar[frozenset[str]] = frozenset({"cache_dir"})
    # Hyper-parameters that change the data (size, generator knobs, the location fields); the
    # pre-flight check runs once per distinct value of these. None: every task-specific field.
    data_options: ClassVar[frozenset[str] | None] = None
    # Exceptions of this task's loaders that mean "the user's data is wrong or missing" (besides
    # ConfigError/DataError and OSError): the pre-flight check turns them into a one-line refusal.
    data_errors: ClassVar[tuple[type[Exception], ...]] = ()

    # What one run of a cell needs from a Ray cluster (the Ray executor's resource request).
    cpus_per_run: ClassVar[float] = 1.0
    gpu_fraction_per_run: ClassVar[float] = 1.0  # asked only when running with --device cuda

    def cells(self) -> list[tuple[str, str]]:
        return self.spec.cells()

    def alias(self, dataset: str, model: str) -> tuple[str, str]:
        """The cell a selector's dataset/model parts name, where a task offers a shorter spelling
        (nerf/blender/lego for the cell nerf/blender-lego/nerf: the spec's ``alias_families``)."""
        return self.spec.alias(dataset, model)

    def method_applies(self, model: str, method: str) -> bool:
        return self.spec.method_applies(model, method)

    def why_not(self, model: str, method: str) -> str:
        return self.spec.why_not(model, method)

    def primary_for(self, model: str) -> str:
        return self.spec.primary_for(model)

    def higher_is_better_for(self, model: str) -> bool:
        return self.metric(self.primary_for(model)).higher_is_better

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    def resources(self, model: str, scale: str, device: str) -> dict[str, float]:
        gpus = self.gpu_fraction_per_run if device.startswith("cuda") else 0.0
        return {"num_cpus": self.cpus_per_run, "num_gpus": gpus}

    def hparams_path(self) -> Path:
        import inspect

        return Path(inspect.getfile(type(self))).with_name("hparams.yaml")

    # -- the pieces of a run (to implement) -----------------------------------------------------
    def load_data(self, dataset: str, hp: TrainHParams, seed: int, scale: str, device: torch.device) -> Any:
        raise NotImplementedError

    def check_data(self, dataset: str, hp: TrainHParams, scale: str) -> str:
        """The pre-flight data check: called by the planner once per (dataset, ``data_options``)
        before anything trains, never during a run.

        Raise ``DataError`` (``dfabench.errors``) with one line naming the file and, where it helps,
        the line or field, for anything a user can get wrong: a missing file or package (say how to
        get it), wrong columns or types, ids out of range, empty splits. The harness also refuses on
        ``ConfigError``, ``OSError``, ``UnicodeError`` and the task's ``data_errors``; any other
        exception is left for the run to meet, and recorded there as an ``error``.

        Return a short fingerprint of the data's *content*: where ``data_location_fields`` are set,
        it stands in the run id for the path. The default loads the data as a run would (seed 0, on
        the CPU; loaders cache, so the runs do not pay twice) and returns ``fingerprint(data)``; a task
        whose loading is expensive or whose loader does not check enough overrides it.
        """
        return self.fingerprint(self.load_data(dataset, hp, 0, scale, torch.device("cpu")))

    def generator_version(self, dataset: str) -> str | None:
        """For built-in data the task generates itself with settings that are not hyper-parameters:
        a short hash of those settings (``harness.identity.settings_version``). It enters the run id,
        so a changed generator makes new runs instead of reusing old records; record it too (in
        ``extras``). None (the default): the dataset's name and the hyper-parameters say what its data
        is, and its run ids are what they always were."""
        return None

    def build_model(self, model: str, hp: TrainHParams, data: Any) -> nn.Module:
        raise NotImplementedError

    def train_batches(self, data: Any, hp: TrainHParams, generator: torch.Generator) -> Iterable[Any]:
        raise NotImplementedError

    def forward(self, model: nn.Module, batch: Any) -> Any:
        return model(batch[0])

    # What training throughput counts (the record's timings.train_items_per_s).
    throughput_unit: ClassVar[str] = "samples"

    def batch_items(self, batch: Any) -> int | None:
        """Items of ``throughput_unit`` in a training batch: the first dimension of the first tensor
        by default; None where it means nothing (a full graph)."""
        first = batch[0] if isinstance(batch, (tuple, list)) else batch
        return int(first.shape[0]) if isinstance(first, torch.Tensor) else None

    def loss(self, output: Any, batch: Any, model: nn.Module, hp: TrainHParams) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, data: Any, split: str, hp: TrainHParams) -> dict[str, float]:
        """Metrics on 'val' or 'test'; called under torch.no_grad() with the model in eval mode."""
        raise NotImplementedError

    def fingerprint(self, data: Any) -> str:
        """A short content hash of the data actually used (provenance)."""
        return "unknown"

    def figures(self, results: Path) -> list[Path]:
        """Figures assembled from several runs' artifacts (NeRF's side-by-sides), written under
        ``results/<domain>/``; called by ``dfabench table --write``."""
        return []

    def architecture(self, model: str, hp: TrainHParams, data: Any) -> dict[str, Any]:
        """What the built network is, for `dfabench explain` (``dfabench.architecture.describe``): the
        output dimension (the rank of DFA's feedback), the feedback points and their widths by tag, the
        depth, the normalisation and its placement, read off one forward pass on the first training
        batch on the CPU. A task whose forward needs more than ``forward(model, batch)`` overrides it."""
        from .architecture import describe

        net = self.build_model(model, hp, data)
        batch = next(iter(self.train_batches(data, hp, torch.Generator().manual_seed(0))))
        return describe(net, lambda: self.forward(net, batch))

    def extras_at_start(self, model: nn.Module, data: Any, hp: TrainHParams) -> dict[str, Any]:
        """Optional additions to the record measured on the freshly built model, before the first
        step (the LM's residual-stream statistics, to compare with the same at the end)."""
        return {}

    def extras(self, model: nn.Module, data: Any, hp: TrainHParams, run_dir: Path) -> dict[str, Any]:
        """Optional task-specific additions to the record (baselines, per-view values...)."""
        return {}


def tensor_fingerprint(*tensors: torch.Tensor) -> str:
    digest = hashlib.sha256()
    for t in tensors:
        # the array's own buffer, not a `tobytes()` copy: the same digest, without copying and
        # paging in a second copy of the data (Fashion-MNIST's 188 MB before every run)
        digest.update(t.detach().cpu().contiguous().numpy().reshape(-1))
    return digest.hexdigest()[:16]


def tensor_batches(tensors: tuple[torch.Tensor, ...], batch_size: int, generator: torch.Generator,
                   drop_last: bool = False) -> Iterable[tuple[torch.Tensor, ...]]:
    """Shuffled mini-batches of in-memory tensors (same first dimension), reproducible from generator."""
    n = tensors[0].shape[0]
    order = torch.randperm(n, generator=generator).to(tensors[0].device)
    stop = n - (n % batch_size) if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        index = order[start:start + batch_size]
        yield tuple(t[index] for t in tensors)


# -- the task registry ---------------------------------------------------------------------------
# Task classes register themselves when their module is imported; the spec's entry point says which
# module that is, so a task is imported only when something asks for it.
_TASKS: dict[str, Task] = {}
_UNAVAILABLE: dict[str, str] = {}  # domain -> why it could not be imported (a missing extra)


def register_task(cls: type[Task]) -> type[Task]:
    if cls.domain not in specs():  # no spec module: the class declares its catalogue itself
        register_spec(_spec_from_class(cls))
    _TASKS[cls.domain] = cls()
    return cls


def _spec_from_class(cls: type[Task]) -> TaskSpec:
    def declared(name: str, default: Any) -> Any:
        for klass in cls.__mro__:
            if klass is Task:
                break
            if name in vars(klass):
                return vars(klass)[name]
        return default

    names = ("datasets", "models", "metrics", "primary_metric", "table_metrics", "explicit_datasets", "explicit_models",
             "bp_only_models", "point_tags", "capabilities")
    given = {name: declared(name, None) for name in names}
    return TaskSpec(domain=cls.domain, entry_point=f"{cls.__module__}:{cls.__qualname__}",
                    **{k: v for k, v in given.items() if v is not None})


def get_task(domain: str) -> Task:
    """The task of one domain, importing only its module. ImportError when its extra is missing."""
    if domain not in _TASKS:
        spec = specs()[domain]
        why = unavailable_reason(spec)
        if why:
            raise ImportError(f"{domain}: {why}")
        try:
            load_class(spec.entry_point)
        except ImportError as err:
            _UNAVAILABLE[domain] = f"{err} (install the extra: pip install 'dfabench[{spec.extra or domain}]')"
            raise
    return _TASKS[domain]


def all_tasks() -> dict[str, Task]:
    """Every task whose libraries are installed (this imports them all: prefer get_task or the specs)."""
    for domain in specs():
        try:
            get_task(domain)
        except ImportError:
            pass
    return dict(_TASKS)


def unavailable_tasks() -> dict[str, str]:
    """Domains that cannot run here and why, from the specs (nothing is imported)."""
    found = {d: why for d, spec in specs().items() if (why := unavailable_reason(spec))}
    return {**_UNAVAILABLE, **found}


def floor(value: float, what: str, higher_is_better: bool = True) -> dict[str, Any]:
    """What a task puts in ``extras['floors'][metric]``: the trivial level its metric must beat."""
    return {"value": float(value), "what": what, "higher_is_better": higher_is_better}
