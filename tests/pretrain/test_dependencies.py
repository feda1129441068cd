"""Every third-party module that ``pretrain`` imports is declared in pyproject.toml.

Module-level imports must come from the base dependencies or the ``pretrain`` extra (what
``pip install 'mri-curate[pretrain]'`` gives); imports inside functions (benchmarks'
optional tools) from any extra, or be an optional reference listed below with its guard.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from tools.requirements import distribution_name

ROOT = Path(__file__).resolve().parents[2]
OURS = {"curate", "manifests", "qc", "pretrain", "tests", "tools"}
#: Imported only behind an ImportError guard, as an optional baseline of a benchmark.
OPTIONAL = {"batchgeneratorsv2": "pretrain.bench_nnssl.baseline_name falls back to scipy without it"}


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """Top-level module names imported at module level and inside functions/classes."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top: set[str] = set()
    nested: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        (top if node in tree.body else nested).update(n.split(".")[0] for n in names)
    return top, nested


def _declared(groups: list[str]) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    reqs = list(project["dependencies"])
    for group in groups or project["optional-dependencies"]:
        reqs += project["optional-dependencies"][group]
    return {distribution_name(r) for r in reqs}


@functools.cache
def _providers() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    return {distribution_name(d) for d in _providers().get(module, [])}


def _third_party(modules: set[str]) -> set[str]:
    return {m for m in modules if m not in sys.stdlib_module_names and m not in OURS and m != "__future__"}


def test_module_level_imports_are_in_the_base_or_pretrain_requirements() -> None:
    declared = _declared(["pretrain"])
    missing = {}
    for path in sorted((ROOT / "pretrain").glob("*.py")):
        for module in _third_party(_imports(path)[0]):
            dists = _distributions(module)
            assert dists, f"{path.name}: imports {module}, which no installed distribution provides"
            if not dists & declared:
                missing[f"{path.name}: {module}"] = sorted(dists)
    assert not missing, f"not declared in [project.dependencies] or the pretrain extra: {missing}"


def test_function_level_imports_are_declared_in_some_extra_or_optional() -> None:
    declared = _declared([])
    missing = {}
    for path in sorted((ROOT / "pretrain").glob("*.py")):
        for module in _third_party(_imports(path)[1]) - set(OPTIONAL):
            if not _distributions(module) & declared:
                missing[path.name] = module
    assert not missing, f"not declared in pyproject.toml: {missing}"


def test_dynamic_network_architectures_is_what_the_model_imports_and_is_declared() -> None:
    # The defect this file guards against: the model imports nnU-Net's networks.
    assert "dynamic_network_architectures" in _imports(ROOT / "pretrain" / "model.py")[0]
    assert "dynamic-network-architectures" in _declared(["pretrain"])
