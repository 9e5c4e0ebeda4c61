"""The package's layers (DESIGN.md) import only downwards, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import stemsight

LAYERS = ("core", "structures", "physics", "realism", "datasets", "models", "training", "analysis", "report",
          "cli")  # bottom to top


def _imported_layers(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
        for name in names:
            parts = name.split(".")
            if parts[0] == "stemsight" and len(parts) > 1 and parts[1] in LAYERS:
                found.add(parts[1])
    return found


def test_every_import_points_down():
    root = Path(stemsight.__file__).parent
    upward = []
    for layer in LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            for other in _imported_layers(path):
                if LAYERS.index(other) > LAYERS.index(layer):
                    upward.append(f"{path.relative_to(root)} imports stemsight.{other}")
    assert not upward, "\n".join(upward)
    assert _imported_layers(root / "cli" / "analyze.py") >= {"core"}  # the scan sees imports at all
