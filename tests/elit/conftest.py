"""Shared setup for the ELIT tests: repository on the path, one CPU thread."""

from __future__ import annotations

import pathlib
import sys

import pytest
import torch

_ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))


@pytest.fixture(autouse=True, scope="session")
def _single_thread() -> None:
    # The test machine is shared; one thread keeps timings fair to neighbours.
    torch.set_num_threads(1)
