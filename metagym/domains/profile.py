"""Profiles: a domain's settings as a frozen dataclass whose fields are the command line's flags.

Every field has a type annotation, a default made with :func:`setting` (which also holds its
accepted range) and a one-line docstring: the string literal written after it, as in CleanRL's
``Args``. :func:`add_profile_flags` turns the fields into ``--kebab-case`` flags,
:func:`profile_overrides` reads them back, and :meth:`Profile.validate` is the one place where
values are checked, before any work starts.

Supported field types: ``int``, ``float``, ``str``, ``bool``, ``tuple[int, ...]`` (and of
``float`` / ``str``), ``dict[str, int]`` (per-learner values: ``--iterations 100`` sets every
learner, ``--iterations maml=100,blackbox=50`` some) and ``X | None``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import math
import textwrap
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Largest accepted int in any field unless the field says otherwise: beyond, it is a typo.
INT_CEILING = 10**9


def setting(
    default: Any = dataclasses.MISSING,
    *,
    low: float | None = None,
    above: float | None = None,
    high: float | None = None,
    choices: Sequence[Any] | None = None,
    factory: Any = dataclasses.MISSING,
) -> Any:
    """A profile field with its accepted range: ``low <= value <= high`` and ``value > above``
    (for numbers and for each entry of tuples and dicts), or one of ``choices``."""
    metadata = {
        "low": low,
        "above": above,
        "high": high,
        "choices": tuple(choices) if choices else None,
    }
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written after the fields of dataclass ``cls`` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, after in zip(body, body[1:], strict=False):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(kind, False)``."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0], True
    return kind, False


def _check_scalar(name: str, kind: type, value: Any, meta: dict[str, Any]) -> None:
    if kind is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false, got {value!r}")
        return
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    elif kind is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {value!r}")
    choices = meta.get("choices")
    if choices and value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(str, choices))}; got {value!r}")
    low, above, high = meta.get("low"), meta.get("above"), meta.get("high")
    if high is None and kind is int:
        high = INT_CEILING
    if kind in (int, float):
        if above is not None and not value > above:
            raise ValueError(f"{name} must be > {above}, got {value!r}")
        if low is not None and value < low:
            raise ValueError(f"{name} must be >= {low}, got {value!r}")
        if high is not None and value > high:
            raise ValueError(f"{name} must be <= {high}, got {value!r}")


def check_value(name: str, kind: Any, value: Any, meta: dict[str, Any]) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` has type ``kind`` and is in range."""
    kind, optional = _unwrap_optional(kind)
    if value is None:
        if optional:
            return
        raise ValueError(f"{name} must be given (got None)")
    origin = typing.get_origin(kind)
    if origin is tuple:
        if not isinstance(value, tuple):
            raise ValueError(f"{name} must be a list of values, got {value!r}")
        if not value:
            raise ValueError(f"{name} must have at least one value")
        for entry in value:
            check_value(name, typing.get_args(kind)[0], entry, meta)
    elif origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping, got {value!r}")
        for key, entry in value.items():
            check_value(f"{name}[{key}]", typing.get_args(kind)[1], entry, meta)
    else:
        _check_scalar(name, kind, value, meta)


@dataclass(frozen=True)
class Profile:
    """Settings every domain has; domains subclass it with their own fields."""

    eval_tasks: int = setting(600, low=1, high=100_000)
    """tasks per evaluated split, the same tasks for every learner"""
    log_every: int = setting(100, low=1)
    """meta-iterations between rows of metrics.csv"""
    checkpoint_every: int = setting(1000, low=1)
    """meta-iterations between checkpoints (one is always written at the end)"""

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        return typing.get_type_hints(cls)

    def validate(self) -> Profile:
        """Check every field against its type and range; return ``self``."""
        types_ = self.field_types()
        for spec in dataclasses.fields(self):
            check_value(
                "--" + spec.name.replace("_", "-"),
                types_[spec.name],
                getattr(self, spec.name),
                dict(spec.metadata),
            )
        return self

    def replace(self, **changes: Any) -> Profile:
        """A copy with ``changes`` applied, validated."""
        return dataclasses.replace(self, **changes).validate()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists)."""
        return json_ready(dataclasses.asdict(self))


def json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def json_object(flag: str, text: str) -> dict[str, Any]:
    """The JSON object written in a flag such as ``--env-kwargs``; a ValueError naming it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{flag} is not JSON: {error}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value


# -- flags -----------------------------------------------------------------------------------------
def _parse_scalar(kind: type, text: str) -> Any:
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"not a boolean: {text!r}")
    return text


def parse_flag(kind: Any, text: str, default: Any = None) -> Any:
    """The value of a flag of type ``kind`` written as ``text`` (see the module docstring)."""
    kind, optional = _unwrap_optional(kind)
    if optional and text.strip().lower() in ("none", ""):
        return None
    origin = typing.get_origin(kind)
    if origin is tuple:
        entry = typing.get_args(kind)[0]
        return tuple(_parse_scalar(entry, part.strip()) for part in text.split(",") if part.strip())
    if origin is dict:
        entry = typing.get_args(kind)[1]
        if "=" not in text:
            value = _parse_scalar(entry, text.strip())
            return dict.fromkeys(default or {}, value)
        out = dict(default or {})
        for part in text.split(","):
            key, sep, value = part.partition("=")
            if not sep or not key.strip():
                raise ValueError(f"expected name=value, got {part!r}")
            if default and key.strip() not in default:
                raise ValueError(f"unknown name {key.strip()!r}; accepted: {', '.join(default)}")
            out[key.strip()] = _parse_scalar(entry, value.strip())
        return out
    return _parse_scalar(kind, text)


def flag_text(value: Any) -> str:
    """``value`` written as its flag would take it."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def add_profile_flags(
    parser: argparse.ArgumentParser, profile_class: type[Profile], shown: Profile | None = None
) -> None:
    """One ``--kebab-case`` flag per field of ``profile_class`` (default: the profile's value),
    its help the field's docstring and, when ``shown`` is given, that profile's value."""
    docs = field_docs(profile_class)
    title = "override the chosen --profile's values"
    if shown is not None:
        title += " (in brackets: the default profile's)"
    group = parser.add_argument_group("profile settings", title)
    for spec in dataclasses.fields(profile_class):
        kind, _ = _unwrap_optional(profile_class.field_types()[spec.name])
        meta = dict(spec.metadata)
        hint = ""
        if meta.get("choices"):
            hint = f" (one of {', '.join(map(str, meta['choices']))})"
        elif typing.get_origin(kind) is tuple:
            hint = " (comma-separated)"
        elif typing.get_origin(kind) is dict:
            hint = " (N for every learner, or name=N,...)"
        group.add_argument(
            "--" + spec.name.replace("_", "-"),
            dest=f"profile.{spec.name}",
            metavar=spec.name.upper(),
            default=None,
            help=docs.get(spec.name, "")
            + hint
            + (f" [{flag_text(getattr(shown, spec.name))}]" if shown is not None else ""),
        )


def profile_overrides(args: argparse.Namespace, profile: Profile) -> dict[str, Any]:
    """The fields given on the command line, parsed against ``profile``'s types; a ValueError
    naming the flag for text that does not parse."""
    changes = {}
    types_ = profile.field_types()
    for spec in dataclasses.fields(profile):
        text = getattr(args, f"profile.{spec.name}", None)
        if text is None:
            continue
        flag = "--" + spec.name.replace("_", "-")
        try:
            changes[spec.name] = parse_flag(types_[spec.name], text, getattr(profile, spec.name))
        except ValueError as error:
            raise ValueError(f"{flag}: cannot read {text!r} ({error})") from None
    return changes
