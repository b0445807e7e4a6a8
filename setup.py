"""Build hook: generates the Yellowstone gRPC modules and compiles the decoder's hot path to C with mypyc.

Everything else is in pyproject.toml.

Yellowstone gRPC (`connectors/yellowstone/*.proto`): protoc (from `grpcio-tools`, a build requirement)
generates `*_pb2.py`, `*_pb2.pyi` and `*_pb2_grpc.py` next to the `.proto` files before `setup()` runs, so
an editable install (`pip install -e .`) imports them from the source tree and a wheel (`pip wheel .`, the
Dockerfile) packs them like any module of the package. They are not committed (.gitignore): the `.proto`
files are the source. protoc writes top-level imports (`import solana_storage_pb2`); they are rewritten to
package-relative ones, as the modules live in the package `connectors.yellowstone`.

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
import re
from pathlib import Path

from setuptools import setup

PROTO_DIR = Path(__file__).resolve().parent / "connectors" / "yellowstone"
"""Where the Yellowstone `.proto` files are, and where their generated modules go."""

COMPILED = [
    "quantbot/solana/codec.py",
    "quantbot/solana/borsh.py",
    "quantbot/solana/transaction.py",
    "quantbot/solana/normalise.py",
    "quantbot/solana/events.py",
    "quantbot/solana/context.py",
    "quantbot/solana/decode.py",
]
"""The modules every transaction goes through. The program decoders are left interpreted: compiled too, they
gained nothing measurable (`bench/decode.py`, whole corpus: 12,454 and 12,585 tx/s interpreted, 12,416 and
12,540 compiled, alternated; a synthetic replay's parse step 62 to 64 µs a frame either way)."""


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


def _generate_grpc_modules() -> None:
    """Generate the Python modules of `PROTO_DIR`'s `.proto` files (see the module docstring)."""
    try:
        from grpc_tools import protoc  # a build requirement only: imported when it is used
    except ImportError as exc:  # a build without isolation, in an environment without it
        raise SystemExit(
            f"building quantbot needs grpcio-tools (see [build-system] in pyproject.toml): {exc}"
        ) from None
    protos = sorted(PROTO_DIR.glob("*.proto"))
    if not protos:
        raise SystemExit(f"no .proto files in {PROTO_DIR}: the Yellowstone gRPC modules cannot be generated")
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto, shipped with grpcio-tools
    out = str(PROTO_DIR)
    argv = ["protoc", f"-I{PROTO_DIR}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}"]
    argv += [f"--grpc_python_out={out}", *map(str, protos)]
    if protoc.main(argv) != 0:
        raise SystemExit(f"protoc failed on {', '.join(p.name for p in protos)}")
    local = "|".join(re.escape(p.stem.replace("-", "_")) for p in protos)
    top_level_import = re.compile(rf"^(import|from) ({local})_pb2\b", re.MULTILINE)
    for generated in [*PROTO_DIR.glob("*_pb2.py"), *PROTO_DIR.glob("*_pb2.pyi"), *PROTO_DIR.glob("*_pb2_grpc.py")]:
        text = generated.read_text()
        fixed = top_level_import.sub(
            lambda m: f"from . import {m[2]}_pb2" if m[1] == "import" else f"from .{m[2]}_pb2", text
        )
        if fixed != text:
            generated.write_text(fixed)


_generate_grpc_modules()
setup(ext_modules=_extensions())
