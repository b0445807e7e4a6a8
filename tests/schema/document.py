"""The schema document, read by the tests independently of the code under test.

Every expectation the schema tests check is parsed from `../shared/seed/database-schema.md` here, so
a test compares the code with the contract rather than with a copy of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from tests.conftest import SCHEMA_DOCUMENT


@cache
def text() -> str:
    """The whole schema document."""
    return SCHEMA_DOCUMENT.read_text(encoding="utf-8")


def _fenced(language: str) -> list[str]:
    """The bodies of the document's fenced blocks in `language` ("" for the unlabelled ones)."""
    blocks = re.findall(r"^```(\w*)\n(.*?)^```$", text(), flags=re.MULTILINE | re.DOTALL)
    return [body for label, body in blocks if label == language]


def create_table_blocks() -> dict[str, str]:
    """Each `CREATE TABLE` statement of the document by table name, in the document's order."""
    blocks: dict[str, str] = {}
    for block in _fenced("sql"):
        match = re.match(r"\s*CREATE TABLE (\w+)", block)
        assert match is not None, f"unexpected sql block in the document: {block[:60]!r}"
        blocks[match.group(1)] = block
    return blocks


def example_documents() -> list[dict[str, Any]]:
    """The document's example MongoDB documents, in its order (tokens, market, whale, strategy)."""
    return [json.loads(block) for block in _fenced("json")]


@dataclass(frozen=True)
class MeasurementSpec:
    """One measurement of the document's time-series schema."""

    name: str
    tags: dict[str, str]
    fields: dict[str, str]


def _listed(block: str, heading: str) -> dict[str, str]:
    section = re.search(rf"^{heading}:\n((?:  - .*\n)+)", block, flags=re.MULTILINE)
    assert section is not None, f"no {heading} in {block[:40]!r}"
    items = re.findall(r"^  - (\w+): (.*)$", section.group(1), flags=re.MULTILINE)
    return dict(items)


def measurements() -> dict[str, MeasurementSpec]:
    """The document's measurements by name, with their tags and fields and the types it gives them."""
    specs = {}
    for block in _fenced(""):
        match = re.match(r"Measurement: (\w+)", block)
        if match is not None:
            name = match.group(1)
            specs[name] = MeasurementSpec(name, _listed(block, "Tags"), _listed(block, "Fields"))
    return specs


@dataclass(frozen=True)
class CacheSpec:
    """One key pattern of the document's cache schema."""

    pattern: str
    value_type: str
    fields: dict[str, str]
    expiration: str


def cache_patterns() -> dict[str, CacheSpec]:
    """The document's key patterns by prefix (`price`, `signal`, `session`, `api`)."""
    specs = {}
    for block in _fenced(""):
        match = re.match(r"Key pattern: (\S+)\nValue type: (.*)\n", block)
        if match is None:
            continue
        pattern = match.group(1)
        fields = _listed(block, "Fields") if "\nFields:\n" in block else {}
        expiration = re.search(r"^Expiration: (.*)$", block, flags=re.MULTILINE)
        assert expiration is not None
        specs[pattern.split(":")[0]] = CacheSpec(pattern, match.group(2), fields, expiration.group(1))
    return specs
