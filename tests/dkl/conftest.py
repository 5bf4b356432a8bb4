"""Shared set-up of the DKL tests."""

from __future__ import annotations

import collections.abc

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> collections.abc.Iterator[None]:
    # These problems are tiny; on shared cores, spinning worker threads only slow them down.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
