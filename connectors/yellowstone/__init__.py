"""Yellowstone gRPC (the Geyser plugin's `Subscribe` stream): its schema and the live source built on it.

`geyser.proto` and `solana-storage.proto` are the subset of the public schema quantbot uses; setup.py
generates `geyser_pb2` (messages), `geyser_pb2_grpc` (service) and their `.pyi` from them at install time.
"""

from connectors.yellowstone.source import GrpcGap, GrpcPosition, YellowstoneError, YellowstoneSource

__all__ = ["GrpcGap", "GrpcPosition", "YellowstoneError", "YellowstoneSource"]
