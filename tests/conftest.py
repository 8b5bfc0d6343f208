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


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for tests of small models: on a shared 2-core machine extra OpenMP threads
    only add synchronisation stalls. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
