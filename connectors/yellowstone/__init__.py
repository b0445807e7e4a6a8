"""Yellowstone gRPC (the Geyser plugin's `Subscribe` stream): its schema and the live source built on it.

`geyser.proto` and `solana-storage.proto` are the subset of the public schema quantbot uses; setup.py
generates `geyser_pb2` (messages), `geyser_pb2_grpc` (service) and their `.pyi` from them at install time.
"""

try:
    from connectors.yellowstone import geyser_pb2 as _generated  # noqa: F401 - only checks it is there
except ImportError as exc:  # a checkout never installed, or installed before the schema was added
    raise ImportError(
        "the Yellowstone gRPC modules are generated at install time and are missing: "
        "run `./dev` (or `pip install -e .`) in the project's directory"
    ) from exc

from connectors.yellowstone.source import GrpcGap, GrpcPosition, YellowstoneError, YellowstoneSource

__all__ = ["GrpcGap", "GrpcPosition", "YellowstoneError", "YellowstoneSource"]
