"""Expand selectors x methods x seeds at one scale into the list of planned runs."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..catalog import METHOD_REQUIREMENTS, SCALES, is_method_spec, method_entry_points, specs, unavailable_reason
from ..errors import ConfigError
from . import identity
from .identity import run_id  # noqa: F401  (the id function has always been importable from here)

if TYPE_CHECKING:  # the planner matches cells from the light specs; torch loads only to resolve runs
    from ..task import TrainHParams


@dataclass
class PlannedRun:
    domain: str
    dataset: str
    model: str
    method: str
    scale: str
    seed: int
    hparams: TrainHParams = field(repr=False)
    # What the user's overrides changed against the task's rules (tables keep these runs apart).
    overrides: dict[str, Any] = field(default_factory=dict, repr=False)
    # Content fingerprint of the user's data (None: the task's built-in data); see identity.py.
    data: str | None = field(default=None, repr=False)
    # A method from outside the package (methods/external.py): where a worker loads it from, and
    # where its code came from (recorded). None for built-in methods.
    method_spec: str | None = field(default=None, repr=False)
    method_origin: dict[str, Any] | None = field(default=None, repr=False)
    # A compute budget (harness/compute.py): {"kind": "flops"|"seconds", "value": X, "label": "flops=bp",
    # "reference": BP's run id when resolved from BP's record}. None: the task's epochs.
    budget: dict[str, Any] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.data is None:
            self.data = identity.data_fingerprint(self.task, self.hparams.model_dump(mode="json"))

    @property
    def task(self):
        from ..task import get_task

        return get_task(self.domain)

    @property
    def cell(self) -> str:
        return f"{self.domain}/{self.dataset}/{self.model}"

    @property
    def id(self) -> str:
        hparams = identity.id_hparams(self.task, self.hparams.model_dump(mode="json"), self.data)
        return run_id(self.domain, self.dataset, self.model, self.method, self.scale, hparams, self.seed,
                      self.task.generator_version(self.dataset), identity.budget_key(self.budget))

    def recorded_hparams(self) -> dict[str, Any]:
        return identity.recorded_hparams(self.task, self.hparams.model_dump(mode="json"), self.data)

    def label(self) -> str:
        return f"{self.cell} {self.method} seed={self.seed}"


def all_cells() -> list[str]:
    """Every cell of every task whose libraries are installed."""
    return [f"{domain}/{d}/{m}" for domain, spec in sorted(specs().items()) if not unavailable_reason(spec)
            for d, m in spec.cells()]


def match_cells(selectors: list[str]) -> list[str]:
    """Cells matching shell-style selectors. A dataset a task lists in ``explicit_datasets`` (official
    data that needs a path or a download) is matched only when the selector names it literally, so
    that ``'graph/*/*'`` stays the offline suite; so is a model in ``explicit_models`` (a probe's)."""
    cells = all_cells()
    tasks = specs()
    chosen: list[str] = []
    for given in selectors:
        if given.count("/") != 2:
            raise ConfigError(f"selector {given!r} must look like domain/dataset/model (globs allowed)")
        domain, dataset, model = given.split("/")
        # a task's shorter spelling of a cell (nerf/blender/lego for nerf/blender-lego/nerf)
        selector = "/".join((domain, *tasks[domain].alias(dataset, model))) if domain in tasks else given
        _, wanted_dataset, wanted_model = selector.split("/")

        def matches(cell: str) -> bool:
            domain, dataset, model = cell.split("/")
            if dataset in tasks[domain].explicit_datasets and dataset != wanted_dataset:
                return False
            if model in tasks[domain].explicit_models and model != wanted_model:
                return False
            return fnmatch.fnmatchcase(cell, selector)

        hits = [c for c in cells if matches(c)]
        if not hits:
            domain = selector.split("/")[0]
            why = unavailable_reason(tasks[domain]) if domain in tasks else None
            raise ConfigError(f"selector {given!r} matches no cell" + (f": {why}" if why else
                                                                       "; see `dfabench list`"))
        chosen += [c for c in hits if c not in chosen]
    return chosen


def plan(selectors: list[str], methods: list[str], scale: str, seeds: list[int],
         overrides: dict[str, Any] | None = None, check_data: bool = True) -> tuple[list[PlannedRun], list[str]]:
    """Returns the planned runs and notes about (cell, method) pairs skipped as not applicable.

    With ``check_data`` (the default; off only where nothing will train) every task checks its data
    once per (dataset, options) before this returns: a problem is a ``DataError``, nothing has run."""
    if scale not in SCALES:
        raise ConfigError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    unknown = [m for m in methods if not is_method_spec(m) and (m not in METHOD_REQUIREMENTS or "@" in m)
               and m not in method_entry_points()]  # a typo fails before torch loads
    if unknown:
        raise ConfigError(f"unknown method {unknown[0]!r}; known: {', '.join(sorted(METHOD_REQUIREMENTS))}"
                          f"; or path/to/file.py:Class, package.module:Class")
    from pydantic import ValidationError

    from ..hparams import resolve
    from ..methods import create
    from ..methods.registry import resolve as resolve_method
    from ..task import get_task

    # key -> (spec, origin): an outside method is imported here, once, and keyed by its code's hash
    loaded = {key: (spec, origin) for key, spec, origin in map(resolve_method, methods)}
    methods = list(loaded)

    runs, notes = [], []
    for cell in match_cells(selectors):
        domain, dataset, model = cell.split("/")
        task = get_task(domain)  # imports only the domains planned
        for method in methods:
            if not task.method_applies(model, method):
                notes.append(f"{cell}: {method} does not apply ({task.why_not(model, method)})")
                continue
            hp = resolve(task, scale=scale, method=method, dataset=dataset, model=model, overrides=overrides)
            base = resolve(task, scale=scale, method=method, dataset=dataset, model=model) if overrides else hp
            changed = identity.overrides(base.model_dump(mode="json"), hp.model_dump(mode="json"),
                                         task.data_location_fields | task.cache_location_fields)
            try:
                create(method, hp.method_options)
            except ValidationError as err:
                first = err.errors()[0]
                raise ConfigError(f"{cell}: method_options for {method}: "
                                  f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
            spec, origin = loaded[method]
            runs += [PlannedRun(domain, dataset, model, method, scale, seed, hp, changed, method_spec=spec,
                                method_origin=origin) for seed in seeds]
    if check_data:
        from .preflight import check_data as preflight

        preflight(runs)
    return runs, notes
