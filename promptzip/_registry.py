"""Registries: named factories for every role, filled by entry points.

Built-ins and plug-ins register the same way: a distribution declares an entry point in the ``promptzip.plugins``
group whose object is a callable taking the :data:`registries` namespace::

    # pyproject.toml of a plug-in
    [project.entry-points."promptzip.plugins"]
    mine = "my_package.plugin:register"

    # my_package/plugin.py
    def register(registries):
        registries.compressors.register("mine", MyCompressor)

promptzip's own built-ins are registered by ``promptzip._builtins:register`` through that same group.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Generic, TypeVar

from promptzip._errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "Registries", "Registry", "load_plugins", "registries"]

logger = logging.getLogger("promptzip")

ENTRY_POINT_GROUP = "promptzip.plugins"
T = TypeVar("T")


@dataclass
class Registry(Generic[T]):
    """Names → factories for one role. Lookups load the plug-ins first."""

    role: str
    _factories: dict[str, Callable[..., T]] = field(default_factory=dict)
    _help: dict[str, str] = field(default_factory=dict)

    def register(self, name: str, factory: Callable[..., T], *, help: str = "", replace: bool = False) -> None:
        key = self._key(name)
        if not key.strip():
            raise ConfigError(f"a {self.role} name must not be empty")
        if not callable(factory):
            raise ConfigError(f"a {self.role} factory must be callable, not {type(factory).__name__}")
        if key in self._factories and not replace and self._factories[key] is not factory:
            raise ConfigError(f"a {self.role} named {name!r} is already registered")
        self._factories[key] = factory
        doc = (getattr(factory, "__doc__", None) or "").strip()
        self._help[key] = help or (doc.splitlines()[0] if doc else "")

    def get(self, name: str) -> Callable[..., T]:
        key = self._key(name)
        load_plugins()
        try:
            return self._factories[key]
        except KeyError:
            known = ", ".join(sorted(self._factories)) or "none"
            raise ConfigError(f"unknown {self.role} {name!r}; known: {known}") from None

    def create(self, name: str, /, **kwargs: Any) -> T:
        factory = self.get(name)
        try:
            inspect.signature(factory).bind(**kwargs)
        except TypeError as exc:  # a missing or unknown option: the factory's own words, under its name
            raise ConfigError(f"cannot create the {self.role} {name!r}: {exc}") from None
        except ValueError:  # no signature to read (some builtins): let the call itself say
            pass
        return factory(**kwargs)

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._factories)

    def describe(self, name: str) -> str:
        key = self._key(name)
        load_plugins()
        return self._help.get(key, "")

    def _key(self, name: object) -> str:
        if not isinstance(name, str):
            raise ConfigError(f"a {self.role} name must be a str, not {name!r}")
        return name.lower()

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return isinstance(name, str) and name.lower() in self._factories

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


@dataclass
class Registries:
    """The namespace handed to every ``register(registries)`` plug-in hook."""

    tokenizers: Registry[Any] = field(default_factory=lambda: Registry("tokenizer"))
    scorers: Registry[Any] = field(default_factory=lambda: Registry("scorer"))
    token_scorers: Registry[Any] = field(default_factory=lambda: Registry("token scorer"))
    compressors: Registry[Any] = field(default_factory=lambda: Registry("compressor"))
    policies: Registry[Any] = field(default_factory=lambda: Registry("policy"))
    caches: Registry[Any] = field(default_factory=lambda: Registry("cache scheme"))
    presets: Registry[Any] = field(default_factory=lambda: Registry("preset"))
    retrievers: Registry[Any] = field(default_factory=lambda: Registry("retriever"))
    models: Registry[Any] = field(default_factory=lambda: Registry("model"))
    summarizers: Registry[Any] = field(default_factory=lambda: Registry("summarizer"))
    reducers: Registry[Any] = field(default_factory=lambda: Registry("reducer"))


registries = Registries()

_lock = threading.RLock()
_loaded = False


def _is_loaded() -> bool:
    return _loaded


def load_plugins() -> None:
    """Run every ``promptzip.plugins`` entry point once per process (built-ins included)."""
    global _loaded
    if _loaded:
        return
    with _lock:
        if _is_loaded():
            return
        _loaded = True  # set first: hooks may look names up while they register
        seen_builtins = False
        # promptzip's own hooks first: a plug-in that claims a built-in name must fail in its own hook (logged),
        # not make the built-ins' registration fail (raised) because it happened to be found earlier on sys.path.
        eps = sorted(
            metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: not ep.value.startswith("promptzip.")
        )
        for ep in eps:
            try:
                hook = ep.load()
                hook(registries)
            except Exception as exc:  # a broken plug-in must not break promptzip
                if ep.value.startswith("promptzip."):
                    raise
                logger.warning("promptzip plug-in %r failed to load: %s", ep.name, exc)
                continue
            seen_builtins = seen_builtins or ep.value.startswith("promptzip._builtins")
        if not seen_builtins:
            # Running from a source tree that was never installed: the metadata is missing, the hook is not.
            from promptzip._builtins import register

            register(registries)
