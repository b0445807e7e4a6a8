"""Byte codecs on the decode hot path: base58 (Solana's text form of keys and instruction data) and base64.

Base58 is the expensive one: the `base58` package decodes one character at a time with a growing big
integer, which costs ~250 µs for a 350-byte event. `b58decode` below maps characters to digit bytes in C
(`bytes.translate`), reads them as one big integer in base 256 and then folds neighbouring digit lanes
pairwise (`hi * 58**w + lo`) on the whole integer at once, so the work is a dozen big-integer operations
whatever the length (~10 µs for the same event). Public keys (32 bytes) are encoded by `solders`, in Rust.

Encoding other data (the synthetic generator writes every instruction's data and Anchor events of up to
400 bytes, 550 digits) has the same problem the other way round: the textbook encoder (one `divmod` by
58 per digit on the whole number) is quadratic and costs ~200 µs for such an event. `b58encode` splits
the number into lanes and converts all lanes at once, SWAR style, inside one Python integer:

1. the number is cut into lanes of `TOP_DIGITS` base-58 digits with a few `divmod`s, and the lanes are
   packed side by side into one integer, each in a field of `32 * TOP_DIGITS / 2` bits;
2. each round splits every lane of `2m` digits into two lanes of `m` digits at once: the high halves
   are `(lanes * M) >> S` masked (`M = floor(2^S / 58^m) + 1` with `S` twice the lane value's bit
   length, the classic exact division by an invariant integer, which holds for every lane value), and
   `lane - high * 58^m + high * 2^(field/2)` puts low and high side by side in one multiply-add;
   fields are wide enough that no product spills into its neighbour;
3. after the last round every field holds one digit; `to_bytes` lays them out, `translate` maps them
   to the alphabet.

Short data (up to 40 bytes) takes a plain loop that peels three digits per `divmod`. This module is the
project's one base58 codec.
"""

from __future__ import annotations

import binascii
import math
from functools import lru_cache

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


_TO_ALPHABET = B58_ALPHABET + bytes(256 - BASE)
"""`bytes.translate` table from digit values (0..57) to alphabet characters."""
_DIGITS_PER_BYTE = math.log(256) / math.log(BASE)
"""Base-58 digits per byte of input (~1.366): sizes the digit count of an input from its length."""

TOP_DIGITS = 32
"""Digits per lane after the initial `divmod`s: 32 measured fastest for 100-400 byte inputs."""
_TOP_DIVISOR = BASE**TOP_DIGITS
_FIELD_BITS_PER_DIGIT = 16
"""A lane of `2m` digits sits in a field of `32m` bits: room for the lane value times its multiplier."""
_TOP_FIELD_BYTES = _FIELD_BITS_PER_DIGIT * TOP_DIGITS // 8

SHORT_BYTES = 40
"""Inputs up to this long take the plain three-digits-per-step loop (faster below ~30 digits)."""
_TRIPLE = BASE**3
_TRIPLES = [bytes((i // (BASE * BASE), (i // BASE) % BASE, i % BASE)) for i in range(_TRIPLE)]
"""Every value below 58^3 as its three digit values, most significant first."""


def _rounds() -> tuple[tuple[int, int, int], ...]:
    """Per splitting round: (shift S, multiplier M, re-packing factor 2^(field/2) - 58^m)."""
    rounds = []
    digits = TOP_DIGITS
    while digits > 1:
        half = digits // 2
        divisor = BASE**half
        value_bits = (BASE**digits - 1).bit_length()
        shift = 2 * value_bits
        multiplier = (1 << shift) // divisor + 1
        field = _FIELD_BITS_PER_DIGIT * digits
        # The product of a lane and the multiplier must stay inside its field, and the quotient must fit
        # in what remains of the field above the shift.
        assert value_bits + multiplier.bit_length() <= field
        assert (divisor - 1).bit_length() <= field - shift
        rounds.append((shift, multiplier, (1 << (field // 2)) - divisor))
        digits = half
    return tuple(rounds)


_ROUNDS = _rounds()


@lru_cache(maxsize=64)
def _masks(lanes: int) -> tuple[int, ...]:
    """Per round, the mask keeping each field's quotient bits, for `lanes` top lanes."""
    masks = []
    count = lanes
    field = _FIELD_BITS_PER_DIGIT * TOP_DIGITS
    for shift, _, _ in _ROUNDS:
        repeat = ((1 << (field * count)) - 1) // ((1 << field) - 1)  # a 1 at the bottom of every field
        masks.append(((1 << (field - shift)) - 1) * repeat)
        count *= 2
        field //= 2
    return tuple(masks)


def b58encode(data: bytes) -> str:
    """Base58 text of `data` (Bitcoin alphabet; each leading zero byte becomes a leading `1`).

    Args:
        data: the bytes to encode.

    Returns:
        The base58 text, identical to `base58.b58encode(data).decode()`.
    """
    value = int.from_bytes(data, "big")
    zeros = len(data) - len(data.lstrip(b"\x00"))
    if len(data) <= SHORT_BYTES:
        parts = []
        while value:
            value, low = divmod(value, _TRIPLE)
            parts.append(_TRIPLES[low])
        parts.reverse()
        digits = b"".join(parts).lstrip(b"\x00")
    else:
        lanes = -(-(int(len(data) * _DIGITS_PER_BYTE) + 1) // TOP_DIGITS)
        chunks = []
        for _ in range(lanes - 1):
            value, low = divmod(value, _TOP_DIVISOR)
            chunks.append(low.to_bytes(_TOP_FIELD_BYTES, "little"))
        chunks.append(value.to_bytes(_TOP_FIELD_BYTES, "little"))
        packed = int.from_bytes(b"".join(chunks), "little")
        for (shift, multiplier, repack), mask in zip(_ROUNDS, _masks(lanes), strict=True):
            # high = lane // 58^m; the lane becomes low + high * 2^(field/2), i.e. lane + high * repack.
            packed += (((packed * multiplier) >> shift) & mask) * repack
        # One digit per 16-bit field, most significant field first: the digit is each field's low byte.
        digits = packed.to_bytes(2 * lanes * TOP_DIGITS, "big")[1::2].lstrip(b"\x00")
    return (b"\x00" * zeros + digits).translate(_TO_ALPHABET).decode("ascii")


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
