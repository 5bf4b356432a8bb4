"""The layout shows the architecture: algorithms import no Swift and no foundation, Swift glue holds no algorithm, nobody touches Nion's privates."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
ALGORITHM_PACKAGES = ("nion_autoem_dkl", "nion_autoem_elit", "nion_autoem_targeting", "nion_autoem_checks", "nion_autoem_fewshot", "nion_autoem_forecast", "nion_autoem_models")
#: Training scripts may learn from the digital twins (pure simulators in nion_autoem.twin); nothing else in an algorithm package may.
TRAINING_SCRIPTS = ("train.py", "pretrain.py")
SWIFT = ("nion.swift", "nion.instrumentation", "nion.ui", "nion.device_kit", "nion.usim_device", "nion.typeshed", "nionswift_plugin")
NUMERICAL_LIBRARIES = ("torch", "gpytorch", "scipy", "skimage", "sklearn")


def modules(folder: str) -> list[pathlib.Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def imported_names(path: pathlib.Path) -> list[tuple[int, str]]:
    names: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.extend((node.lineno, f"{node.module}.{alias.name}") for alias in node.names)
    return names


def offending(path: pathlib.Path, prefixes: tuple[str, ...]) -> list[str]:
    return [f"{path.relative_to(ROOT)}:{line} imports {name}" for line, name in imported_names(path)
            if any(name == p or name.startswith(p + ".") for p in prefixes)]


@pytest.mark.parametrize("package", ALGORITHM_PACKAGES)
def test_algorithm_packages_import_neither_swift_nor_the_foundation(package: str) -> None:
    problems = [problem for path in modules(package) for problem in offending(path, SWIFT + ("nion_autoem",))
                if not (path.name in TRAINING_SCRIPTS and " imports nion_autoem.twin." in problem)]
    assert problems == []


def test_only_the_swift_glue_imports_swift() -> None:
    outside = [path for path in modules("nion_autoem") if "swift" not in path.relative_to(ROOT / "nion_autoem").parts]
    assert len(outside) > 20
    problems = [problem for path in outside for problem in offending(path, SWIFT)]
    assert problems == []


def test_the_swift_glue_holds_no_algorithm() -> None:
    glue = modules("nion_autoem/swift") + modules("nionswift_plugin")
    problems = [problem for path in glue for problem in offending(path, NUMERICAL_LIBRARIES)]
    assert problems == []


def test_no_private_attribute_of_another_object_is_touched() -> None:
    """``obj._thing`` only on ``self`` / ``cls`` (our own classes); never on Nion's objects."""
    problems = []
    for folder in ("nion_autoem", "nion_autoem_dkl", "nion_autoem_elit", "nion_autoem_targeting", "nion_autoem_checks", "nion_autoem_fewshot",
                   "nion_autoem_forecast", "nion_autoem_models", "nionswift_plugin"):
        for path in modules(folder):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
                    problems.append(f"{path.relative_to(ROOT)}:{node.lineno} reaches {ast.unparse(node)}")
    assert problems == []
