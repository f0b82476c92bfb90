"""Methods from outside the package: a file, a module, or an installed package's entry point.

A ``--method`` item is one of

* a built-in name (``dfa``);
* ``path/to/file.py:Class``: the class in that file (imported under a private module name);
* ``package.module:Class``: the class in an importable module;
* a name in the entry-point group ``dfabench.methods`` (``my-dfa = mypkg.methods:MyDFA`` in a
  package's pyproject): imported only when named, or by ``dfabench list`` to show it.

The class must subclass ``dfabench.methods.Method``. Its records are keyed ``<name>@<sha8>``, the first
8 hex digits of the sha256 of the file that defines the class: an edited file is another method to
the tables and another run to the resume logic, so two versions never share a row. ``origin`` (in
each record as ``method_origin``) says where the code came from: the kind of spec, the module, the
file (relative to the working folder when inside it, else its name; never an absolute path), the
full sha256, and the distribution and version when the module belongs to an installed one.

Only the defining file is hashed: code it imports from elsewhere is identified by the package
version at most, so bump it (or keep the method in one file) when that code changes.

The spec a worker process loads from (``spec``; an absolute path for a file) travels with the
planned run as a string, not the class, so Ray workers import it themselves; ``load`` checks that
the code there still has the planned hash.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..catalog import is_method_spec as is_spec
from ..catalog import method_entry_points as entry_points
from ..errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")  # no ',' (the --method list) nor '@' (the key)


class ExternalMethodError(ConfigError):
    """A spec that does not name a usable method: one line, exit 2, nothing run."""


@dataclass(frozen=True)
class External:
    key: str  # what records, tables and run ids call it: name@sha8
    spec: str  # what a process loads it from (absolute file path, module, or entry-point name)
    cls: type = field(repr=False, compare=False)
    origin: dict[str, Any] = field(compare=False)

    @property
    def name(self) -> str:
        return self.key.split("@", 1)[0]


def load(item: str, expect_key: str | None = None) -> External:
    """Import the method ``item`` names (file:Class, module:Class or an entry-point name).

    ``expect_key``: the key the run was planned with; a different hash means the code changed since."""
    if is_spec(item):
        where, _, attr = item.rpartition(":")
        if not where or not attr:
            raise ExternalMethodError(f"method {item!r}: expected path/to/file.py:Class or package.module:Class")
        if where.endswith(".py") or "/" in where:
            module, origin = _import_file(item, Path(where), attr)
        else:
            module, origin = _import_module(item, where, attr)
    else:
        ep = entry_points().get(item)
        if ep is None:
            raise ExternalMethodError(f"unknown method {item!r}")  # the caller says what is known
        where, _, attr = (part.strip() for part in ep.value.partition(":"))
        module, origin = _import_module(item, where, attr, entry_point=ep)
    cls = _class(item, module, attr, origin.get("file") if origin["kind"] == "file" else module.__name__)
    source = inspect.getsourcefile(cls) or getattr(sys.modules.get(cls.__module__), "__file__", None)
    if not source or not Path(source).is_file():
        raise ExternalMethodError(f"method {item!r}: cannot find the source file of {cls.__qualname__}")
    digest = hashlib.sha256(Path(source).read_bytes()).hexdigest()
    name = getattr(cls, "name", None) or (item if not is_spec(item) else cls.__name__.lower())
    if not isinstance(name, str) or not NAME.match(name):
        raise ExternalMethodError(f"method {item!r}: its name {name!r} must be letters, digits and . _ + - "
                                  f"(set the class attribute name)")
    origin = {**origin, "class": cls.__qualname__, "file": origin.get("file") or _shown(Path(source)),
              "sha256": digest, **_distribution(cls.__module__, origin)}
    key = f"{name}@{digest[:8]}"
    if expect_key is not None and key != expect_key:
        raise ExternalMethodError(f"method {item!r}: the code is now {key}, not {expect_key} as planned "
                                  f"(its file changed since the run was planned)")
    return External(key, origin.pop("_load"), cls, origin)


def _import_file(item: str, path: Path, attr: str):
    path = path.expanduser()
    if not path.is_file():
        raise ExternalMethodError(f"method {item!r}: no such file {path}")
    resolved = path.resolve()
    digest = hashlib.sha256(resolved.read_bytes()).hexdigest()
    # One private module per file content, so two versions of a file can be loaded side by side.
    module_name = f"dfabench_external_{re.sub(r'[^0-9A-Za-z_]', '_', resolved.stem)}_{digest[:12]}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, resolved)
        if spec is None or spec.loader is None:
            raise ExternalMethodError(f"method {item!r}: cannot import {path} as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # pydantic and pickling look the class's module up here
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[module_name]
            raise ExternalMethodError(f"method {item!r}: importing {path} failed: "
                                      f"{type(err).__name__}: {err}".splitlines()[0]) from None
    return sys.modules[module_name], {"kind": "file", "spec": f"{_shown(resolved)}:{attr}",
                                      "file": _shown(resolved), "_load": f"{resolved}:{attr}"}


def _import_module(item: str, where: str, attr: str, entry_point=None):
    try:
        module = importlib.import_module(where)
    except Exception as err:
        raise ExternalMethodError(f"method {item!r}: importing module {where!r} failed: "
                                  f"{type(err).__name__}: {err}".splitlines()[0]) from None
    if entry_point is not None:
        origin = {"kind": "entry_point", "entry_point": entry_point.name, "spec": entry_point.value,
                  "module": where, "_load": entry_point.name}
        if entry_point.dist is not None:
            origin.update(package=entry_point.dist.name, version=entry_point.dist.version)
    else:
        origin = {"kind": "module", "spec": f"{where}:{attr}", "module": where, "_load": f"{where}:{attr}"}
    source = getattr(module, "__file__", None)
    if source:
        origin["file"] = _module_file(where, Path(source))
    return module, origin


def _class(item: str, module, attr: str, where: str) -> type:
    from .base import Method

    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ExternalMethodError(f"method {item!r}: {where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Method)):
        raise ExternalMethodError(f"method {item!r}: {attr} is not a subclass of dfabench.methods.Method")
    if obj._backward is Method._backward and obj.backward is Method.backward:
        raise ExternalMethodError(f"method {item!r}: {attr} does not implement _backward")
    return obj


def _shown(path: Path) -> str:
    """A path as a record may hold it: relative to the working folder when inside it, else its name."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return path.name


def _module_file(module: str, path: Path) -> str:
    """The module's file relative to its top-level package's parent (mypkg/methods.py)."""
    depth = module.count(".") + (1 if path.name == "__init__.py" else 0)
    parts = path.resolve().parts
    return "/".join(parts[-(depth + 1):])


def _distribution(module: str, origin: dict[str, Any]) -> dict[str, str]:
    """The installed distribution that provides ``module`` (entry points know theirs already)."""
    if "package" in origin or origin.get("kind") == "file":
        return {}
    top = module.split(".")[0]
    names = importlib.metadata.packages_distributions().get(top, [])
    if not names:
        return {}
    try:
        return {"package": names[0], "version": importlib.metadata.version(names[0])}
    except importlib.metadata.PackageNotFoundError:
        return {}
