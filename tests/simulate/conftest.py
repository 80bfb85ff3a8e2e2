"""Fixtures of the simulation tests: one thread, the calibrated tiny generator loaded once."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny():
    """``(G, info)``: the bundled tiny generator with its output calibrated (auto)."""
    from facefeat.simulate.pipeline import load_simulation_generator

    torch.set_num_threads(1)
    return load_simulation_generator(None)
