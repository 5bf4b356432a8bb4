from __future__ import annotations

import doctest
import types

import pytest

from nion_autoem_targeting import changepoint
from nion_autoem_targeting import drift
from nion_autoem_targeting import ordering
from nion_autoem_targeting import selection


@pytest.mark.parametrize("module", [changepoint, drift, ordering, selection], ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_docstring_examples_run(module: types.ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
