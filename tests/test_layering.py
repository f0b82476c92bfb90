"""The package's layering: no import cycle among its modules, and no private name imported across them.

Read from the source with ``ast`` (nothing is imported): every module of ``dfabench``, with ``tasks/``
and ``leaderboard/`` under the names they install as (``dfabench.tasks``, ``dfabench.leaderboard``).
Imports inside functions count (a lazy import is still a dependency); imports under
``if TYPE_CHECKING:`` do not (they never run).
"""
from __future__ import annotations

import ast
from pathlib import Path

import dfabench

ROOT = Path(dfabench.__file__).resolve().parent.parent
FOLDERS = {"dfabench": ROOT / "dfabench", "dfabench.tasks": ROOT / "tasks",
           "dfabench.leaderboard": ROOT / "leaderboard"}


def package_modules() -> dict[str, Path]:
    found = {}
    for prefix, folder in FOLDERS.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def imports_of(name: str, path: Path, known: dict[str, Path]):
    """(imported module, imported name or None, line) for every import of one module."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                submodule = f"{module}.{alias.name}"
                yield (submodule, None, node.lineno) if submodule in known else (module, alias.name, node.lineno)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    known = package_modules()
    edges: dict[str, set[str]] = {name: set() for name in known}
    private = []
    for name, path in known.items():
        for module, imported, line in imports_of(name, path, known):
            if module not in known or module == name:
                continue
            edges[name].add(module)
            if imported and imported.startswith("_") and not imported.startswith("__"):
                private.append(f"{path.relative_to(ROOT)}:{line} imports {imported} from {module}")
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycle_among_the_package_modules():
    edges, _ = import_graph()
    assert cycles(edges) == []


def test_no_private_name_is_imported_across_modules():
    _, private = import_graph()
    assert private == []


def test_the_checks_see_a_cycle_and_a_private_import(tmp_path):
    """The two checks above on a made-up graph and on a module that breaks the rule."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
    probe = tmp_path / "probe.py"
    probe.write_text("from .frame import method_key\nif TYPE_CHECKING:\n    from .tables import wide\n"
                     "def f():\n    from .summaries import t975, _private\n")
    found = [(m, n) for m, n, _ in imports_of("dfabench.report.probe", probe, package_modules())]
    assert found == [("dfabench.report.frame", "method_key"), ("dfabench.report.summaries", "t975"),
                     ("dfabench.report.summaries", "_private")]


def test_the_reporting_layers_import_only_upwards():
    """frame ← summaries ← published ← the outputs: the lower layers never import an output."""
    edges, _ = import_graph()
    outputs = {f"dfabench.report.{m}" for m in ("tables", "glance", "compact", "reproduce", "explain", "probes", "plots")}
    for lower in ("frame", "summaries", "published"):
        assert not edges[f"dfabench.report.{lower}"] & outputs, lower
    assert "dfabench.report.summaries" not in edges["dfabench.report.frame"]
    # the tasks' contract does not reach into the gate (floor() lives in dfabench.task)
    for name, targets in edges.items():
        if name.startswith("dfabench.tasks."):
            assert not {t for t in targets if t.startswith("dfabench.guards")}, name
