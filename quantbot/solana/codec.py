"""Byte codecs on the decode hot path: base58 (Solana's text form of keys and instruction data) and base64.

Base58 is the expensive one: the `base58` package decodes one character at a time with a growing big
integer, which costs ~250 µs for a 350-byte event. `b58decode` below maps characters to digit bytes in C
(`bytes.translate`), reads them as one big integer in base 256 and then folds neighbouring digit lanes
pairwise (`hi * 58**w + lo`) on the whole integer at once, so the work is a dozen big-integer operations
whatever the length (~10 µs for the same event). Public keys (32 bytes) are encoded by `solders`, in Rust.
"""

from __future__ import annotations

import binascii

from solders.pubkey import Pubkey
from solders.signature import Signature

B58_ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
"""Bitcoin's base58 alphabet, which Solana uses for keys, signatures and instruction data."""

BASE = len(B58_ALPHABET)
_INVALID_DIGIT = 0xFF
_DIGIT_OF = bytearray([_INVALID_DIGIT]) * 256
for _value, _char in enumerate(B58_ALPHABET):
    _DIGIT_OF[_char] = _value
_DIGIT_TABLE = bytes(_DIGIT_OF)

_SHORT_TEXT = 16
"""Up to this many digits (most non-event instruction data), a plain loop beats folding."""
_SHORT_CACHE_SIZE = 4096
_SHORT_DECODED: dict[str, bytes] = {}
"""Memo of short decodings: the same few instruction payloads (compute budget, common transfer
amounts) recur in most transactions. A pure function's cache, bounded, cleared when full."""
_MAX_B58_DIGITS = 1 << 13
"""Longest base58 text `b58decode` accepts (8192 digits, ~6 kB of data: well above a 1232-byte packet)."""


def _fold_steps() -> tuple[tuple[int, int, int], ...]:
    """Precompute, per folding round, (lane width in bits, lane mask, 58 ** digits per lane)."""
    steps = []
    digits = 1
    while digits < _MAX_B58_DIGITS:
        width = 8 * digits
        # Ones in the low `width` bits of every 2*width-bit block, as wide as the longest input.
        block = b"\x00" * digits + b"\xff" * digits
        mask = int.from_bytes(block * (_MAX_B58_DIGITS // (2 * digits)), "big")
        steps.append((width, mask, BASE**digits))
        digits *= 2
    return tuple(steps)


_FOLD_STEPS = _fold_steps()


class CodecError(ValueError):
    """Text that is not valid base58 or base64."""


def b58decode(text: str) -> bytes:
    """Decode base58 text to bytes.

    Args:
        text: base58 text (Bitcoin alphabet); leading `1`s are leading zero bytes.

    Returns:
        The decoded bytes.

    Raises:
        CodecError: on a character outside the alphabet or text longer than 8192 characters.
    """
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError as exc:
        raise CodecError("base58 text holds a non-ascii character") from exc
    size = len(raw)
    if size > _MAX_B58_DIGITS:
        raise CodecError(f"base58 text of {size} characters is too long")
    digits = raw.translate(_DIGIT_TABLE)
    if _INVALID_DIGIT in digits:  # an int needle: a memchr, four times faster than a bytes one
        raise CodecError("base58 text holds a character outside the alphabet")
    if size <= _SHORT_TEXT:
        cached = _SHORT_DECODED.get(text)
        if cached is not None:
            return cached
        value = 0
        for digit in digits:
            value = value * BASE + digit
        zeros = size - len(raw.lstrip(b"1"))
        decoded = b"\x00" * zeros + _to_bytes(value)
        if len(_SHORT_DECODED) >= _SHORT_CACHE_SIZE:
            _SHORT_DECODED.clear()
        _SHORT_DECODED[text] = decoded
        return decoded
    value = int.from_bytes(digits, "big")
    # Each byte of `value` is one base-58 digit; fold pairs of lanes until one lane holds the number
    # (lanes double each round: ceil(log2(size)) rounds).
    for width, mask, scale in _FOLD_STEPS[: (size - 1).bit_length()]:
        value = ((value >> width) & mask) * scale + (value & mask)
    zeros = size - len(raw.lstrip(b"1"))
    return b"\x00" * zeros + _to_bytes(value)


def _to_bytes(value: int) -> bytes:
    """Big-endian bytes of a non-negative integer, as few as hold it (none for zero)."""
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def b58encode(data: bytes) -> str:
    """Encode bytes as base58 text (used for short values; keys go through `pubkey_str`)."""
    value = int.from_bytes(data, "big")
    out = bytearray()
    while value:
        value, digit = divmod(value, BASE)
        out.append(B58_ALPHABET[digit])
    zeros = len(data) - len(data.lstrip(b"\x00"))
    out.extend(b"1" * zeros)
    out.reverse()
    return out.decode("ascii")


def pubkey_str(raw: bytes) -> str:
    """Base58 text of a 32-byte public key."""
    return str(Pubkey.from_bytes(raw))


def signature_str(raw: bytes) -> str:
    """Base58 text of a 64-byte signature."""
    return str(Signature.from_bytes(raw))


def b64decode(text: str) -> bytes:
    """Decode standard base64 text, strictly.

    Raises:
        CodecError: on text that is not base64.
    """
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise CodecError("text is not valid base64") from exc
