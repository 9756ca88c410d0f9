"""The domain registry: ``get(name)`` and ``names()``.

A domain (:class:`~metagym.domains.base.Domain`) bundles profiles, task distributions and one
:class:`~metagym.domains.base.LearnerRecipe` per learner. The built-in domains register when
this package is first asked for them; ``register`` adds one of your own.
"""

from __future__ import annotations

import importlib

from metagym.domains.base import FAMILIES, Context, Domain, LearnerRecipe
from metagym.domains.profile import Profile, setting

__all__ = [
    "FAMILIES",
    "Context",
    "Domain",
    "LearnerRecipe",
    "Profile",
    "get",
    "names",
    "register",
    "setting",
]

#: Modules of the built-in domains; each calls :func:`register` when imported.
BUILTIN = (
    "metagym.domains.sinusoid",
    "metagym.domains.regression",
    "metagym.domains.omniglot",
    "metagym.domains.classification",
    "metagym.domains.rl",
)
_REGISTRY: dict[str, Domain] = {}
_loaded = False


def register(domain: Domain) -> Domain:
    """Add ``domain`` to the registry (a name registered twice is refused)."""
    if domain.name in _REGISTRY and _REGISTRY[domain.name] is not domain:
        raise ValueError(f"a domain named {domain.name!r} is already registered")
    _REGISTRY[domain.name] = domain
    return domain


def _load_builtin() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in BUILTIN:
            importlib.import_module(module)


def names() -> list[str]:
    """The registered domains' names."""
    _load_builtin()
    return list(_REGISTRY)


def get(name: str) -> Domain:
    """The domain called ``name``; a ValueError listing the registered ones otherwise."""
    _load_builtin()
    if name not in _REGISTRY:
        raise ValueError(f"unknown domain {name!r}; accepted: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
