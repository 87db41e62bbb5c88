"""The import rule of ARCHITECTURE.md, as a test: layers import downwards only.

Every ``import``/``from ... import`` in the package (top-level or inside a function) is read
from the source; a module may import only the factorflow packages its layer allows, and the
pure layers (models, storage, data, serving, evaluation) never import Prefect or Dask.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "factorflow"

#: The shared base every layer may use.
BASE = {"errors", "progress", "factors", "sparse", "threads", "__init__", "__version__"}

#: layer → the factorflow layers it may import (besides BASE and itself).
ALLOWED = {
    "storage": set(),
    "models": set(),
    "data": {"storage"},
    "serving": {"storage", "models"},
    "evaluation": {"serving"},
    "parallel": {"models", "storage", "data"},
    "pipeline": {"config", "storage", "models", "data", "serving", "evaluation", "parallel"},
    "tasks": {"config", "storage", "models", "data", "serving", "evaluation", "parallel", "pipeline"},
    "flows": {"config", "storage", "models", "data", "pipeline", "tasks"},
}
#: Layers that must run without a Prefect API or a Dask scheduler.
PURE = {"storage", "models", "data", "serving", "evaluation"}
ORCHESTRATION = ("prefect", "distributed", "dask")


def _layer(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path, package: list[str] | None = None) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = package or ["factorflow", *path.relative_to(PACKAGE).parent.parts]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name == "factorflow":  # from factorflow import x: x is the module
                out += [(node.lineno, f"factorflow.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, name))
    return out


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if _layer(p) in ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_layers_import_downwards_only(path):
    layer = _layer(path)
    bad = []
    for line, name in _imports(path):
        parts = name.split(".")
        if parts[0] == "factorflow" and len(parts) > 1:
            target = parts[1]
            if target not in BASE and target != layer and target not in ALLOWED[layer]:
                bad.append(f"line {line}: {name} ({layer} may import {sorted(ALLOWED[layer] | BASE)})")
        elif layer in PURE and parts[0] in ORCHESTRATION:
            bad.append(f"line {line}: {name} (the {layer} layer must not need Prefect or Dask)")
    assert not bad, f"{path.relative_to(PACKAGE)}: " + "; ".join(bad)


def test_every_package_has_a_layer():
    """A new top-level package must be given its place in the rule (cli and api may import anything)."""
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages <= set(ALLOWED) | {"cli"}, packages - set(ALLOWED) - {"cli"}


def test_the_rule_sees_lazy_and_relative_imports(tmp_path):
    """The checker reads imports inside functions too (where the heavy ones hide) and resolves
    relative imports, so neither can slip past it."""
    f = tmp_path / "m.py"
    f.write_text("from ..storage import fs\n\ndef f():\n    from prefect import flow\n    import distributed\n")
    assert [n for _, n in _imports(f, ["factorflow", "models"])] == ["factorflow.storage", "prefect", "distributed"]
