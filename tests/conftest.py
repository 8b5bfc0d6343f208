"""Shared test settings.

End-to-end tests carry ``@pytest.mark.slow``. ``make test`` runs them at a reduced size; with
``DISTILLKIT_FULL=1`` (``make test-full``) they run at the size the benchmarks use.
"""
import os

import pytest
import torch

FULL = os.environ.get("DISTILLKIT_FULL") == "1"


def sized(reduced, full):
    """The reduced value under `make test`, the full one under `make test-full`."""
    return full if FULL else reduced


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
