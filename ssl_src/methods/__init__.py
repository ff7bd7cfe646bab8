"""Self-supervised methods: each is its heads, its loss and (optionally) hooks; the loop lives in train.py.

Methods register by name so a config string picks one, as in solo-learn.
"""
from . import byol, directpred, distill, mocov3, nnsiam, simsiam  # noqa: F401  (registration)
from .base import METHODS, Method, Option, build_method, method_names, method_options, negative_cosine

__all__ = ["METHODS", "Method", "Option", "build_method", "method_names", "method_options", "negative_cosine"]
