"""The compiled hot path (setup.py): a build older than its source is refused, not silently run."""

from __future__ import annotations

import importlib.machinery
import os
from pathlib import Path

from quantbot.solana import stale_builds

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
LONG_AGO = 1_000_000_000
"""A modification time (2001) older than any file this test writes."""


def test_stale_builds_names_only_sources_edited_after_their_build(tmp_path: Path) -> None:
    """A source newer than its compiled module is reported; an older one, or one never compiled, is not."""
    (tmp_path / f"fresh{SUFFIX}").write_bytes(b"")
    (tmp_path / "fresh.py").write_text("")
    os.utime(tmp_path / "fresh.py", (LONG_AGO, LONG_AGO))
    (tmp_path / f"edited{SUFFIX}").write_bytes(b"")
    os.utime(tmp_path / f"edited{SUFFIX}", (LONG_AGO, LONG_AGO))
    (tmp_path / "edited.py").write_text("")
    (tmp_path / "plain.py").write_text("")

    found = stale_builds(tmp_path)

    assert found == [(tmp_path / "edited.py", tmp_path / f"edited{SUFFIX}")]


def test_this_installation_has_no_stale_build() -> None:
    """What the tests import is what the sources say (`./dev` rebuilds after an edit)."""
    package = Path(__file__).resolve().parents[2] / "quantbot" / "solana"

    assert stale_builds(package) == []
