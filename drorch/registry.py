"""The one lazy driver registry: a name maps to `"module:attribute"`, imported on first
use, so an optional dependency (libvirt) is needed only by what uses it. It holds the
hypervisor drivers, the replicator drivers and the CLI's command groups."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, Generic, TypeVar, cast

T = TypeVar("T")


def load(target: str) -> Any:
    """The object `target` ("package.module:attribute") names, importing its module."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{target!r} is not 'module:attribute'")
    return getattr(importlib.import_module(module_name), attr)


class Registry(MutableMapping[str, str], Generic[T]):
    """name -> "module:attribute". `load(name)` imports the object and checks it with
    `accepts` (a programming error, never a user's, when that fails)."""

    def __init__(
        self, what: str, targets: Mapping[str, str], accepts: Callable[[object], bool]
    ) -> None:
        self.what = what
        self._targets = dict(targets)
        self._accepts = accepts

    def __getitem__(self, name: str) -> str:
        return self._targets[name]

    def __setitem__(self, name: str, target: str) -> None:
        self._targets[name] = target

    def __delitem__(self, name: str) -> None:
        del self._targets[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def load(self, name: str) -> T:
        target = self._targets.get(name)
        if target is None:
            raise KeyError(f"no {self.what} {name!r} (known: {', '.join(sorted(self))})")
        obj = load(target)
        if not self._accepts(obj):
            raise TypeError(f"{self.what} {name!r}: {target} is not what it should be")
        return cast(T, obj)


def subclass_of(base: type) -> Callable[[object], bool]:
    return lambda obj: isinstance(obj, type) and issubclass(obj, base)
