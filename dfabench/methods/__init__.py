"""Credit-assignment methods, one module each (a method's variants beside it).

Importing this package imports every method module (``catalog.method_modules``: the paper's bp, dfa
and shallow first, then the others by name), and each registers its classes with ``@register`` or
``register_variant``. Adding a method is adding a file here: nothing else lists it.
"""
import importlib

from ..catalog import method_modules
from .base import Method
from .registry import METHODS, UnknownMethod, create, register, register_variant

for _module in method_modules():
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["METHODS", "Method", "UnknownMethod", "create", "register", "register_variant"]
