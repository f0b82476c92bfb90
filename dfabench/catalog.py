"""The light registry: what every task offers, known without importing any task's libraries.

Each task is one folder, ``tasks/<domain>/``, whose spec module ``tasks/<domain>/spec.py`` (installed as
``dfabench.tasks.<domain>.spec``; the package's ``__init__`` imports nothing) defines ``SPEC = TaskSpec(...)``: its datasets, models,
cells, metrics, which methods apply, the libraries it needs and the data each dataset reads. The
spec names the task class by a string entry point (``"dfabench.tasks.mlp.task:MLPTask"``, as
nerfbaselines names its methods), so `dfabench --help`, `list` and selector matching import only
the standard library, and torch, torch-geometric or transformers load only for the task that runs.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path

SCALES = ("smoke", "small", "paper", "gate")  # gate: the regression gate's cells (baselines/gate)
SPEC_MODULE = "spec"  # tasks/<domain>/spec.py

# The built-in methods live one per module in dfabench/methods/ (variants beside their parent), each
# registering itself with ``@register`` / ``register_variant``. The light index below is read from those
# files' source, so `list` and the planner know every method and what it needs of a task's models
# without importing torch; tests/test_catalog.py checks it against the imported registry.
METHODS_DIR = Path(__file__).resolve().parent / "methods"
PAPER_METHODS = ("bp", "dfa", "shallow")  # listed first, in this order; the other modules by name
NOT_METHOD_MODULES = frozenset({"__init__", "base", "registry", "external"})


def method_modules(folder: Path = METHODS_DIR) -> list[str]:
    """The modules of ``folder`` that define methods, in the order they register (and `list` shows)."""
    names = sorted(p.stem for p in folder.glob("*.py") if p.stem not in NOT_METHOD_MODULES
                   and not p.stem.startswith("_"))
    return [n for n in PAPER_METHODS if n in names] + [n for n in names if n not in PAPER_METHODS]


def _tags(node) -> frozenset[str]:
    """``frozenset({"a", "b"})`` (or a plain literal) as written in a method's source."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "frozenset":
        return frozenset(ast.literal_eval(node.args[0])) if node.args else frozenset()
    return frozenset(ast.literal_eval(node))


def scan_methods(folder: Path = METHODS_DIR) -> dict[str, frozenset[str]]:
    """``{name: requires_tags}`` of every method the modules register, in registration order, read from
    their source: a class decorated ``@register`` (its ``name``; its ``requires_tags`` or its base's) and
    each ``register_variant("name", Base, ..., requires_tags=...)`` call at module level."""
    classes: dict[str, tuple[str | None, frozenset[str] | None, str | None]] = {}
    registered: list[tuple[str, str | None, object]] = []  # (class name, variant name, requires_tags node)
    for module in method_modules(folder):
        for node in ast.parse((folder / f"{module}.py").read_text()).body:
            if isinstance(node, ast.ClassDef):
                fields = {t.id: n.value for n in node.body if isinstance(n, ast.Assign)
                          for t in n.targets if isinstance(t, ast.Name)}
                fields.update({n.target.id: n.value for n in node.body
                               if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.value})
                name = ast.literal_eval(fields["name"]) if "name" in fields else None
                tags = _tags(fields["requires_tags"]) if "requires_tags" in fields else None
                base = next((b.id for b in node.bases if isinstance(b, ast.Name)), None)
                classes[node.name] = (name, tags, base)
                if any(getattr(d, "id", None) == "register" for d in node.decorator_list):
                    registered.append((node.name, None, None))
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) \
                    and getattr(node.value.func, "id", None) == "register_variant":
                call = node.value
                tags = next((k.value for k in call.keywords if k.arg == "requires_tags"), None)
                registered.append((call.args[1].id, ast.literal_eval(call.args[0]), tags if tags is not None else False))

    def inherited(cls: str | None) -> frozenset[str]:
        while cls in classes:
            if classes[cls][1] is not None:
                return classes[cls][1]
            cls = classes[cls][2]
        return frozenset()

    index: dict[str, frozenset[str]] = {}
    for cls, variant, tags in registered:
        if variant is None:
            index[classes[cls][0]] = inherited(cls)
        else:  # a variant needs only what it declares (register_variant's default is nothing)
            index[variant] = frozenset() if tags is False else _tags(tags)
    return index


METHOD_REQUIREMENTS: dict[str, frozenset[str]] = scan_methods()


def listed_methods() -> list[str]:
    """Every known method in the order `list` shows them: the paper's three, then the rest as registered."""
    return sorted(METHOD_REQUIREMENTS, key=lambda m: PAPER_METHODS.index(m) if m in PAPER_METHODS else len(PAPER_METHODS))
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
    # domain/FAMILY-NAME/<the model> (nerf/blender/lego is nerf/blender-lego/nerf), the one model of the
    # offline suite (explicit models, run only when named, are not it).
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
        suite = [m for m in self.models if m not in self.explicit_models]  # a probe's variant never answers
        if dataset in self.alias_families and model not in self.models and len(suite) == 1:
            return f"{dataset}-{model}", suite[0]
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
            if info.ispkg and any(m.name == SPEC_MODULE for m in pkgutil.iter_modules(
                    [str(Path(info.module_finder.path) / info.name)])):
                spec = importlib.import_module(f"dfabench.tasks.{info.name}.{SPEC_MODULE}").SPEC
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
