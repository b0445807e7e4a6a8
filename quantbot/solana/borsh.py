"""Borsh layouts: compile a field list once into `struct` readers, then decode (and encode) payloads.

Programs describe their events in Borsh (little-endian fixed-size integers, `bool` as one byte, 32-byte
public keys, `u32`-length-prefixed strings and vectors, one-byte tags for field-less enums). A `Layout`
turns a field list into as few `struct.Struct` unpacks as possible; fixed-size runs are read with one
call. Layouts may end in optional groups: programs append fields in new versions, and an event from an
older version simply stops earlier (`Layout.decode` reads every whole group that is present).

`Layout.encode` is the inverse; tests and synthetic feeds use it to produce events.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from solders.pubkey import Pubkey

from quantbot.solana.codec import b58decode, pubkey_str

FieldSpec = tuple[str, str]
"""(name, borsh type) with type one of `Layout.FIXED` or `string`, or `vec<T>` of a fixed type."""

_U32 = struct.Struct("<I")
PUBKEY_SIZE = 32
U128_SIZE = 16
_MAX_VEC_ITEMS = 1024
"""A vector longer than this in an event is taken for corrupt input (events carry a handful of items)."""


def _u128(raw: bytes) -> int:
    return int.from_bytes(raw, "little")


def _i128(raw: bytes) -> int:
    return int.from_bytes(raw, "little", signed=True)


FIXED: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "u8": ("B", None),
    "i8": ("b", None),
    "bool": ("?", None),
    "u16": ("H", None),
    "i16": ("h", None),
    "u32": ("I", None),
    "i32": ("i", None),
    "u64": ("Q", None),
    "i64": ("q", None),
    "u128": ("16s", _u128),
    "i128": ("16s", _i128),
    "pubkey": ("32s", pubkey_str),
    "enum": ("B", None),
}
"""Fixed-size Borsh types: struct code and the converter applied after unpacking (None: as is)."""


class _Segment:
    """A run of fixed-size fields (one struct) or a single variable-size field."""

    __slots__ = ("converters", "item", "kind", "kinds", "names", "pubkeys", "struct")

    def __init__(self, kind: str, names: list[str], fmt: str = "", item: str = "", kinds: Sequence[str] = ()) -> None:
        self.kind = kind
        self.names = names
        self.kinds = list(kinds)
        self.struct = struct.Struct("<" + fmt) if fmt else None
        self.item = item
        self.pubkeys: list[int] = []
        """Positions of the public-key fields (unpacked as 32 bytes, stored as base58 text)."""
        self.converters: list[tuple[int, Callable[[Any], Any]]] = []
        """(position, converter) of the other fields that are not stored as unpacked (128-bit integers)."""

    def store(self, values: tuple[Any, ...], out: dict[str, Any]) -> None:
        """Put a fixed-size run's unpacked values into `out`, converted (keys to base58, u128 to int)."""
        # Same lengths by construction; `strict=True` would make each zip a keyword call (twice the cost).
        if self.pubkeys or self.converters:
            converted = list(values)
            for index in self.pubkeys:
                # `pubkey_str` inline: events carry up to eight keys, this is the commonest conversion.
                converted[index] = str(Pubkey.from_bytes(converted[index]))
            for index, convert in self.converters:
                converted[index] = convert(converted[index])
            out.update(zip(self.names, converted))  # noqa: B905
        else:
            out.update(zip(self.names, values))  # noqa: B905


def _compile(fields: Sequence[FieldSpec]) -> list[_Segment]:
    segments: list[_Segment] = []
    fmt = ""
    names: list[str] = []
    kinds: list[str] = []
    converters: list[tuple[int, Callable[[Any], Any]]] = []

    def flush() -> None:
        nonlocal fmt, names, kinds, converters
        if names:
            segment = _Segment("fixed", names, fmt, kinds=kinds)
            segment.pubkeys = [index for index, kind in enumerate(kinds) if kind == "pubkey"]
            segment.converters = [(index, convert) for index, convert in converters if kinds[index] != "pubkey"]
            segments.append(segment)
        fmt, names, kinds, converters = "", [], [], []

    for name, kind in fields:
        if kind in FIXED:
            code, convert = FIXED[kind]
            if convert is not None:
                converters.append((len(names), convert))
            names.append(name)
            kinds.append(kind)
            fmt += code
        elif kind == "string":
            flush()
            segments.append(_Segment("string", [name]))
        elif kind.startswith("vec<") and kind.endswith(">") and kind[4:-1] in FIXED:
            flush()
            segments.append(_Segment("vec", [name], item=kind[4:-1]))
        else:
            raise ValueError(f"unsupported borsh type `{kind}` for field `{name}`")
    flush()
    return segments


class Layout:
    """A compiled Borsh layout: required fields, then optional groups appended by later versions."""

    __slots__ = ("fields", "groups", "name", "plan")

    def __init__(self, name: str, fields: Sequence[FieldSpec], optional: Sequence[Sequence[FieldSpec]] = ()) -> None:
        self.name = name
        self.fields: tuple[FieldSpec, ...] = tuple(fields) + tuple(f for group in optional for f in group)
        self.groups = [_compile(fields)] + [_compile(group) for group in optional]
        # Per group: its one fixed-size run when it is only that (the common case, decoded with a single
        # unpack), else None for the general segment loop; and its segments.
        self.plan: list[tuple[_Segment | None, list[_Segment]]] = [
            (g[0] if len(g) == 1 and g[0].kind == "fixed" else None, g) for g in self.groups
        ]

    def decode(self, data: bytes, offset: int = 0) -> dict[str, Any] | None:
        """Decode the payload at `offset`; None if the required fields do not fit or are malformed."""
        out: dict[str, Any] = {}
        size = len(data)
        pos = offset
        for number, (segment, segments) in enumerate(self.plan):
            if segment is None:
                end = _decode_segments(segments, data, pos, out)
                if end < 0:
                    return None if number == 0 else out
                pos = end
                continue
            reader = segment.struct
            assert reader is not None
            end = pos + reader.size
            if end > size:
                return None if number == 0 else out
            segment.store(reader.unpack_from(data, pos), out)
            pos = end
        return out

    def encode(self, values: dict[str, Any]) -> bytes:
        """Encode `values` (every required field, and optional groups while all their fields are given)."""
        parts: list[bytes] = []
        for number, segments in enumerate(self.groups):
            names = [n for segment in segments for n in segment.names]
            if number and not all(n in values for n in names):
                break
            for segment in segments:
                parts.append(_encode_segment(segment, values))
        return b"".join(parts)


def _decode_segments(segments: list[_Segment], data: bytes, pos: int, out: dict[str, Any]) -> int:
    """Decode segments into `out`; returns the end offset, or -1 if the data ends or is malformed."""
    size = len(data)
    for segment in segments:
        kind = segment.kind
        if kind == "fixed":
            reader = segment.struct
            assert reader is not None
            if pos + reader.size > size:
                return -1
            segment.store(reader.unpack_from(data, pos), out)
            pos += reader.size
        elif kind == "string":
            if pos + _U32.size > size:
                return -1
            (length,) = _U32.unpack_from(data, pos)
            pos += _U32.size
            if pos + length > size:
                return -1
            try:
                out[segment.names[0]] = data[pos : pos + length].decode("utf-8")
            except UnicodeDecodeError:
                return -1
            pos += length
        else:
            if pos + _U32.size > size:
                return -1
            (count,) = _U32.unpack_from(data, pos)
            pos += _U32.size
            code, convert_item = FIXED[segment.item]
            item = struct.Struct("<" + code)
            if count > _MAX_VEC_ITEMS or pos + count * item.size > size:
                return -1
            items = [item.unpack_from(data, pos + i * item.size)[0] for i in range(count)]
            if convert_item is not None:
                items = [convert_item(v) for v in items]
            out[segment.names[0]] = items
            pos += count * item.size
    return pos


def _encode_value(kind: str, value: Any) -> Any:
    if kind == "pubkey":
        raw = b58decode(value) if isinstance(value, str) else bytes(value)
        if len(raw) != PUBKEY_SIZE:
            raise ValueError(f"public key of {len(raw)} bytes")
        return raw
    if kind == "u128":
        return int(value).to_bytes(U128_SIZE, "little")
    if kind == "i128":
        return int(value).to_bytes(U128_SIZE, "little", signed=True)
    return value


def _encode_segment(segment: _Segment, values: dict[str, Any]) -> bytes:
    if segment.kind == "fixed":
        assert segment.struct is not None
        packed = [_encode_value(kind, values[name]) for name, kind in zip(segment.names, segment.kinds, strict=True)]
        return segment.struct.pack(*packed)
    name = segment.names[0]
    if segment.kind == "string":
        raw = str(values[name]).encode("utf-8")
        return _U32.pack(len(raw)) + raw
    code, _ = FIXED[segment.item]
    items = list(values[name])
    item = struct.Struct("<" + code)
    return _U32.pack(len(items)) + b"".join(item.pack(_encode_value(segment.item, v)) for v in items)
