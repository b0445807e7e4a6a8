"""Layering: the decoder package imports only the standard library, orjson, solders and quantbot."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "quantbot" / "solana"
ALLOWED_THIRD_PARTY = {"orjson", "solders"}


def test_solana_package_imports_no_network_client_or_bytewax() -> None:
    """Every import in quantbot/solana is stdlib, an allowed codec library, or quantbot itself."""
    # Arrange
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))

        # Act
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root not in sys.stdlib_module_names and root not in ALLOWED_THIRD_PARTY and root != "quantbot":
                    offenders.append(f"{path.relative_to(PACKAGE)}: {name}")

    # Assert
    assert offenders == []
