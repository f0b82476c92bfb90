"""The light registry: what every task offers, known without importing any task's libraries.

Each task has a spec module beside its folder, ``tasks/<domain>_spec.py`` (installed as
``dfabench.tasks.<domain>_spec``), that defines ``SPEC = TaskSpec(...)``: its datasets, models,
cells, metrics, which methods apply, the libraries it needs and the data each dataset reads. The
spec names the task class by a string entry point (``"dfabench.tasks.mlp.task:MLPTask"``, as
nerfbaselines names its methods), so `dfabench --help`, `list` and selector matching import only
the standard library, and torch, torch-geometric or transformers load only for the task that runs.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field

SCALES = ("smoke", "small", "paper", "gate")  # gate: the regression gate's cells (baselines/gate)
SPEC_SUFFIX = "_spec"

# The methods by name, in `list` order, with what each needs of a task's models: the light index of
# dfabench.methods (whose classes import torch); tests/test_catalog.py checks that the two agree.
METHOD_REQUIREMENTS: dict[str, frozenset[str]] = {
    "bp": frozenset(), "dfa": frozenset(), "dfa-micro": frozenset({"micro"}), "dfa-head": frozenset({"conv"}),
    "shallow": frozenset(), "dfa-sparse": frozenset(), "dfa-sign": frozenset(), "drtp": frozenset(),
    "fa": frozenset({"layerwise"}), "sign-symmetry": frozenset({"layerwise"}), "hybrid": frozenset(),
}
# Methods from outside the package (dfabench/methods/external.py): installed packages declare them in
# this entry-point group; a --method item with ':' names a file or module. Both known without importing.
METHOD_ENTRY_POINTS = "dfabench.methods"


def method_entry_points() -> dict:
    """The installed ``dfabench.methods`` entry points by name (nothing is imported)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=METHOD_ENTRY_POINTS)}


def is_method_spec(item: str) -> bool:
    """Whether a --method item names code (path/to/file.py:Class, package.module:Class)."""
    return ":" in item


# How to say a requirement when a task does not offer it. Point tags come from ``point_tags``, the
# rest from ``capabilities``.
REQUIREMENTS: dict[str, str] = {
    "micro": "feedback points tagged 'micro' (after each Transformer sub-layer)",
    "conv": "feedback points tagged 'conv' (after convolutional blocks)",
    "layerwise": "models whose weighted layers are all nn.Linear / nn.Conv2d (it replaces each layer's W^T)",
}


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool


@dataclass(frozen=True)
class TaskSpec:
    domain: str
    entry_point: str  # "module:Class", imported only to run the task
    datasets: dict[str, str]  # name -> one-line description
    models: dict[str, str]
    metrics: tuple[Metric, ...]
    primary_metric: str
    # The default grid; None: every dataset x every model.
    cells_: tuple[tuple[str, str], ...] | None = None
    # The test metrics `dfabench table` shows, each as its own row; empty: the primary metric only.
    table_metrics: tuple[str, ...] = ()
    # Official datasets that need a user's path or a download: a glob selector skips them.
    explicit_datasets: frozenset[str] = frozenset()
    # Models that exist for one-factor probes (`dfabench probe`): likewise matched only when a selector
    # names them, so that 'mlp/*/*' stays the survey's suite and `reproduce` the paper's tables.
    explicit_models: frozenset[str] = frozenset()
    bp_only_models: frozenset[str] = frozenset()
    point_tags: frozenset[str] = frozenset({"default"})
    capabilities: frozenset[str] = frozenset()
    primary_by_model: dict[str, str] = field(default_factory=dict)  # a model whose primary metric differs
    # (model, method) pairs that cannot mean anything, with the reason `run` prints.
    excluded: dict[tuple[str, str], str] = field(default_factory=dict)
    # Datasets that also name a family of cells in a selector: domain/FAMILY/NAME is the cell
    # domain/FAMILY-NAME/<the model> (nerf/blender/lego is nerf/blender-lego/nerf).
    alias_families: frozenset[str] = frozenset()
    requires: tuple[str, ...] = ("torch",)  # top-level modules the task imports
    extra: str | None = None  # the pip extra that provides them
    # dataset -> the offline data sources (dfabench.data.sources) it reads; none: generated.
    data: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def cells(self) -> list[tuple[str, str]]:
        if self.cells_ is not None:
            return list(self.cells_)
        return [(d, m) for d in self.datasets for m in self.models]

    def alias(self, dataset: str, model: str) -> tuple[str, str]:
        """The cell a selector's dataset/model parts name (see ``alias_families``)."""
        if dataset in self.alias_families and model not in self.models and len(self.models) == 1:
            return f"{dataset}-{model}", next(iter(self.models))
        return dataset, model

    def method_applies(self, model: str, method: str) -> bool:
        if method == "bp":
            return True
        if model in self.bp_only_models or (model, method) in self.excluded:
            return False
        return METHOD_REQUIREMENTS[method] <= self.point_tags | self.capabilities

    def why_not(self, model: str, method: str) -> str:
        if model in self.bp_only_models:
            return f"{model} has no hidden layer to give feedback to: BP only"
        if (model, method) in self.excluded:
            return self.excluded[(model, method)]
        missing = sorted(METHOD_REQUIREMENTS[method] - self.point_tags - self.capabilities)
        needs = "; ".join(REQUIREMENTS.get(tag, f"feedback points tagged {tag!r}") for tag in missing)
        return f"{method} needs {needs}, which {self.domain} models do not offer"

    def primary_for(self, model: str) -> str:
        return self.primary_by_model.get(model, self.primary_metric)

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    def missing_libraries(self) -> list[str]:
        """The required modules that are not installed (found without importing them)."""
        return [name for name in self.requires if importlib.util.find_spec(name) is None]

    def data_sources(self, dataset: str) -> tuple[str, ...]:
        return self.data.get(dataset, ())


_SPECS: dict[str, TaskSpec] | None = None


def specs() -> dict[str, TaskSpec]:
    """Every task's spec, by domain (imports only the spec modules)."""
    global _SPECS
    if _SPECS is None:
        import dfabench.tasks as package

        found = {}
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if not info.ispkg and info.name.endswith(SPEC_SUFFIX):
                spec = importlib.import_module(f"dfabench.tasks.{info.name}").SPEC
                found[spec.domain] = spec
        _SPECS = found
    return dict(_SPECS)


def register_spec(spec: TaskSpec) -> None:
    """Add a spec that no spec module provides (a task class that declares its own catalogue)."""
    specs()
    _SPECS[spec.domain] = spec


def unavailable_reason(spec: TaskSpec) -> str | None:
    missing = spec.missing_libraries()
    if not missing:
        return None
    extra = f"pip install 'dfabench[{spec.extra}]'" if spec.extra else f"pip install {' '.join(missing)}"
    return f"needs {', '.join(missing)} (install the extra: {extra})"


def load_class(entry_point: str) -> type:
    module, name = entry_point.split(":")
    return getattr(importlib.import_module(module), name)
