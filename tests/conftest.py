"""Shared test fixtures."""

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one CPU thread for the module (restored afterwards): small nets run faster and the same
    seed gives the same bytes whatever the machine's core count."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
