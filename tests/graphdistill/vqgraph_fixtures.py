"""Fixtures shared by the VQGraph tests (imported by name into each test module)."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Small graphs: extra OpenMP threads only add synchronisation stalls on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
