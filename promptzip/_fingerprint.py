"""Fingerprints derived from a component's configuration, never formatted by hand.

A component's fingerprint names what its outputs depend on, and the caches key on it, so a field left out of a
hand-written string silently serves stale entries. :func:`derived_fingerprint` reads every constructor parameter
back from the attribute of the same name (a parameter without one is an error, not a silent omission), renders
nested components by their own fingerprints, and prefixes the class name and its ``fingerprint_version`` (raise it
when the behaviour changes while the configuration does not).
"""

from __future__ import annotations

import inspect
from collections.abc import Collection, Mapping
from typing import Any

__all__ = ["RUNTIME_ONLY", "derived_fingerprint"]

# Constructor parameters that never change an output: where results are stored, whether a bar is drawn.
RUNTIME_ONLY = frozenset({"cache", "progress"})


def derived_fingerprint(obj: object, *, skip: Collection[str] = (), values: Mapping[str, Any] | None = None) -> str:
    """``Class/vN(param=value, ...)`` over ``obj``'s constructor parameters, less :data:`RUNTIME_ONLY` and ``skip``
    (secrets, thread counts). ``values`` gives a parameter's rendering where the stored attribute is not it (a URL
    with its credentials removed), and adds what is not a parameter (the version of a prompt the class sends)."""
    cls = type(obj)
    values = values or {}
    parts = []
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in RUNTIME_ONLY or p.name in skip:
            continue
        if p.name in values:
            parts.append(f"{p.name}={values[p.name]}")
            continue
        if not hasattr(obj, p.name):
            raise TypeError(
                f"{cls.__name__}: the constructor parameter {p.name!r} is not stored as an attribute of that name, "
                "so the fingerprint cannot see it (store it, or pass it in skip= or values=)"
            )
        parts.append(f"{p.name}={_render(getattr(obj, p.name))}")
    named = set(inspect.signature(cls.__init__).parameters)
    parts.extend(f"{k}={values[k]}" for k in sorted(values) if k not in named)
    return f"{cls.__name__}/v{getattr(cls, 'fingerprint_version', 1)}({','.join(parts)})"


def _render(value: Any) -> str:
    fingerprint = getattr(value, "fingerprint", None)
    if isinstance(fingerprint, str):  # a nested component: what its outputs depend on
        return fingerprint
    if hasattr(value, "name") and not isinstance(value, str | bytes | int | float | tuple | list | dict):
        return str(value.name)
    return repr(value)
