"""Methods registered by name. A new built-in method is one module that calls ``register``; a method
from outside the package is named by a spec (``external.py``) and registered here under its key."""
from __future__ import annotations

from ..errors import ConfigError
from .base import Method

METHODS: dict[str, type[Method]] = {}


class UnknownMethod(KeyError):
    pass


def register(cls: type[Method]) -> type[Method]:
    if cls.name in METHODS:
        raise ValueError(f"method {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def register_variant(name: str, base: type[Method], summary: str, requires_tags: frozenset[str] = frozenset(),
                     **defaults) -> type[Method]:
    """A named method that is ``base`` with other default options (its own rows in the tables).

    User options still override the defaults, e.g. ``dfa-micro`` is ``dfa`` acting on the points
    tagged ``micro`` as well as the default ones.
    """

    def __init__(self, options: dict | None = None):
        base.__init__(self, {**defaults, **(options or {})})

    variant = type(base.__name__ + "_" + name.replace("-", "_"), (base,),
                   {"name": name, "summary": summary, "__init__": __init__, "defaults": defaults,
                    "requires_tags": frozenset(requires_tags)})
    return register(variant)


def resolve(item: str):
    """The method a ``--method`` item names: (key, spec to load it from or None, origin or None).

    Built-in names resolve to themselves; a file, module or entry-point method is imported, and
    registered under its key ``name@sha8`` (in the light index too, so ``list`` and the planner
    treat it like the others)."""
    from . import external

    if item in METHODS and not external.is_spec(item) and "@" not in item:
        return item, None, None
    try:
        found = external.load(item)
    except external.ExternalMethodError as err:
        if str(err) == f"unknown method {item!r}":
            known = sorted({*METHODS, *external.entry_points()} - {k for k in METHODS if "@" in k})
            raise external.ExternalMethodError(f"unknown method {item!r}; known: {', '.join(known)}; or "
                                               f"path/to/file.py:Class, package.module:Class") from None
        raise
    register_external(found)
    return found.key, found.spec, found.origin


def register_external(found) -> None:
    from ..catalog import METHOD_REQUIREMENTS

    METHODS.setdefault(found.key, found.cls)
    METHOD_REQUIREMENTS.setdefault(found.key, frozenset(getattr(found.cls, "requires_tags", frozenset())))


def create(name: str, options: dict | None = None, spec: str | None = None) -> Method:
    """An instance of the method ``name``; ``spec`` loads an outside method this process has not
    imported yet (a Ray worker), checking that its code still has the key's hash."""
    if name not in METHODS and spec is not None:
        from . import external

        register_external(external.load(spec, expect_key=name))
    try:
        cls = METHODS[name]
    except KeyError:
        raise UnknownMethod(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}") from None
    return cls(options)


def describe(items: list[str]) -> list[str]:
    """``dfabench list``'s lines for the installed entry points and the ``--method`` items given.

    Each is imported (and registered, so the cells list it); an installed method that fails to import
    is a warning line, a ``--method`` item that fails is an error (exit 2)."""
    from ..catalog import METHOD_REQUIREMENTS
    from . import external

    lines = [f"# method {name}: entry point {ep.value} ignored: the built-in method of that name wins"
             for name, ep in external.entry_points().items() if name in METHOD_REQUIREMENTS]
    wanted = [(name, True) for name in external.entry_points() if name not in METHOD_REQUIREMENTS] + \
             [(item, False) for item in items]
    for item, installed in wanted:
        try:
            key, _, origin = resolve(item)
        except ConfigError as err:
            if not installed:
                raise
            lines.append(f"# method {item}: cannot load it: {err}")
            continue
        if origin is None:
            continue  # a built-in name
        cls = METHODS[key]
        needs = ",".join(sorted(METHOD_REQUIREMENTS[key])) or "nothing"
        where = f"{origin['package']} {origin['version']}, " if "package" in origin else ""
        lines.append(f"# method {key}: {getattr(cls, 'summary', '') or '(no summary)'}  requires={needs}  "
                     f"from={where}{origin['spec']} sha256={origin['sha256'][:12]}")
    return lines
