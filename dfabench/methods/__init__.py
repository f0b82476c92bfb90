"""Credit-assignment methods. Importing this package registers the built-in ones."""
from . import bp, dfa, shallow  # noqa: F401  (registration side effect; the paper's three first)
from . import dfa_variants, drtp, fa, hybrid  # noqa: F401,I001  (then the other methods, in this order in `list`)
from .base import Method
from .registry import METHODS, UnknownMethod, create, register, register_variant

__all__ = ["METHODS", "Method", "UnknownMethod", "create", "register", "register_variant"]
