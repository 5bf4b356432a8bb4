"""Every example in the docstrings of the pure modules runs, and says what it shows."""

from __future__ import annotations

import doctest
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PURE = ("nion_autoem_dkl", "nion_autoem_elit", "nion_autoem_targeting", "nion_autoem_checks", "nion_autoem_fewshot", "nion_autoem_forecast", "nion_autoem_models", "nion_autoem")


def pure_modules() -> list[str]:
    names = []
    for package in PURE:
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            if "swift" in relative.parts or relative.name == "__main__":
                continue  # Swift glue needs a running Swift; its examples are marked to skip
            names.append(".".join(relative.parts).removesuffix(".__init__"))
    return names


@pytest.mark.parametrize("name", pure_modules())
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_the_pure_modules_do_have_examples() -> None:
    attempted = sum(doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS).attempted for name in pure_modules())
    assert attempted >= 150
