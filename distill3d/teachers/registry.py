"""Teachers by name: ``build_teacher("efficientnet-lite0")`` returns a ready, frozen :class:`Teacher`.

Modules register a factory with :func:`register_teacher`; the built-in teachers are registered when
``distill3d.teachers`` is imported. Factories import their third-party package only when called, so
listing teachers never loads a network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import Teacher


@dataclass(frozen=True)
class TeacherEntry:
    name: str
    factory: Callable[..., Teacher]
    description: str
    needs_checkpoint: bool  # True for adapters whose weights are the user's file (SAM, CLIP)


_REGISTRY: dict[str, TeacherEntry] = {}


def register_teacher(name: str, description: str, *, needs_checkpoint: bool = False):
    """Decorator registering ``factory(**kwargs) -> Teacher`` under ``name``."""

    def wrap(factory: Callable[..., Teacher]) -> Callable[..., Teacher]:
        if name in _REGISTRY:
            raise ValueError(f"teacher {name!r} is already registered")
        _REGISTRY[name] = TeacherEntry(name, factory, description, needs_checkpoint)
        return factory

    return wrap


def available_teachers() -> list[TeacherEntry]:
    """All registered teachers, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def build_teacher(name: str, **kwargs) -> Teacher:
    """Builds the teacher registered as ``name`` (``kwargs`` go to its factory, e.g. ``checkpoint=``)."""
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY))
        raise KeyError(f"unknown teacher {name!r}; available: {known}")
    entry = _REGISTRY[name]
    if entry.needs_checkpoint and kwargs.get("checkpoint") is None and kwargs.get("config") is None:
        raise ValueError(
            f"teacher {name!r} loads your own weights: pass checkpoint=PATH (CLI: `train --teacher-checkpoint PATH`, "
            "`teachers extract --checkpoint PATH`)")
    teacher = entry.factory(**kwargs)
    teacher.name = name
    return teacher
