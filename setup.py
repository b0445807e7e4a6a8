"""Build hook: compiles the decoder's hot path to C with mypyc; everything else is in pyproject.toml.

DESIGN §7 asks 10,000 transactions/s per core for parse + normalise + decode. Interpreted, those
modules reach 10,000 at best on this project's 2-core reference machine (`bench/decode.py`: 9,982 on
the whole corpus); compiled, 11,600 to 13,000, from the same source: they are already fully typed
(mypy --strict), which is what mypyc needs.

- The compiled modules are optional extensions: without a C compiler (or with
  `QUANTBOT_PURE_PYTHON=1` in the environment) the build warns and installs them as plain Python,
  which behaves the same, only slower. Tests run against whichever the install produced.
- An editable install (`pip install -e .`, what `./dev` does) builds the extensions next to their
  sources. Python then imports the compiled module, not the `.py`, so after editing one of these
  modules it must be rebuilt: `./dev` does that by itself, and `quantbot.solana` refuses to import a
  compiled module older than its source, saying so (`quantbot/solana/__init__.py`).
"""

from __future__ import annotations

import os

from setuptools import setup

COMPILED = [
    "quantbot/solana/codec.py",
    "quantbot/solana/borsh.py",
    "quantbot/solana/transaction.py",
    "quantbot/solana/normalise.py",
    "quantbot/solana/events.py",
    "quantbot/solana/context.py",
    "quantbot/solana/decode.py",
]
"""The modules every transaction goes through (the program decoders are per program: left interpreted)."""


def _extensions() -> list[object]:
    if os.environ.get("QUANTBOT_PURE_PYTHON"):
        return []
    from mypyc.build import mypycify  # a build requirement only: imported when it is used

    # Not the project's mypy configuration: its pydantic plugin, and the runtime dependencies it types
    # against, are not in the isolated build environment (their values compile as `Any`, as they are).
    options = ["--config-file=", "--ignore-missing-imports", "--python-version=3.11"]
    extensions = mypycify([*options, *COMPILED], opt_level="3", group_name="quantbot_solana")
    for extension in extensions:
        extension.optional = True  # no compiler: warn and keep the pure-Python modules
    return list(extensions)


setup(ext_modules=_extensions())
