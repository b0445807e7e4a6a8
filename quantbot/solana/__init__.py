"""Solana transaction decoding: normalise any `getTransaction`-like JSON, recognise DEX activity.

Public API:

- `quantbot.solana.normalise.parse_transactions(raw) -> list[Transaction]` (raises
  `TransactionFormatError`), and `normalise(document)` for already-parsed JSON;
- `quantbot.solana.decode.decode_transaction(tx) -> list[Activity]` (raises `DecodeError` when a
  decoder fails: never a partial or balance-derived reading);
- `quantbot.solana.decode.activity_to_json(activity) -> dict` (the `quantbot decode` line shape);
- `quantbot.solana.decode.decode_files(paths, out, err) -> int` (what `quantbot decode PATH...` runs).

Layout: `transaction` (the normalised model), `normalise` (encodings and shapes), `codec` (base58/64),
`borsh` (layouts), `events` (CPI and log events), `context` (what decoders share), `programs/` (one
decoder per program), `decode` (dispatch, the CLI's file loop and the JSON shape).
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path


def stale_builds(package_dir: Path) -> list[tuple[Path, Path]]:
    """(source, compiled module) pairs in `package_dir` whose source changed after it was compiled."""
    stale = []
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for built in package_dir.glob(f"*{suffix}"):
            source = built.with_name(built.name.removesuffix(suffix) + ".py")
            if source.exists() and source.stat().st_mtime > built.stat().st_mtime:
                stale.append((source, built))
    return stale


def _refuse_stale_builds() -> None:
    """The hot-path modules are compiled in place by an editable install (setup.py), and Python imports
    a compiled module rather than its source: after an edit, the old build would run, silently.

    Only in a source tree: an installed wheel's files are as they were built, whatever times the
    installer gave them (it writes each module's source after its compiled file).
    """
    package = Path(__file__).parent
    if not (package.parents[1] / "setup.py").exists():
        return
    stale = stale_builds(package)
    if stale:
        source, built = stale[0]
        raise ImportError(
            f"{source} changed after it was compiled into {built.name}: rebuild with `./dev test` or "
            "`pip install --no-deps -e .` (or delete the compiled file to run the source)"
        )


_refuse_stale_builds()
