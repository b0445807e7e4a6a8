"""Fast base58 encoding for the synthetic feed: instruction data, events and keys of any length.

The feed writes a base58 string for every instruction's data, and Anchor CPI events run to 400 bytes
(550 base58 digits). The textbook encoder (one `divmod` by 58 per digit on the whole number) is
quadratic and costs ~200 µs for such an event. This one splits the number into lanes and converts all
lanes at once, SWAR style, inside one Python integer:

1. the number is cut into lanes of `TOP_DIGITS` base-58 digits with a few `divmod`s, and the lanes are
   packed side by side into one integer, each in a field of `32 * TOP_DIGITS / 2` bits;
2. each round splits every lane of `2m` digits into two lanes of `m` digits at once: the high halves
   are `(lanes * M) >> S` masked (`M = floor(2^S / 58^m) + 1` with `S` twice the lane value's bit
   length, the classic exact division by an invariant integer, which holds for every lane value), and
   `lane - high * 58^m + high * 2^(field/2)` puts low and high side by side in one multiply-add;
   fields are wide enough that no product spills into its neighbour;
3. after the last round every field holds one digit; `to_bytes` lays them out, `translate` maps them
   to the alphabet.

Short data (up to 40 bytes) takes a plain loop that peels three digits per `divmod`.
The inverse, decoding, is `quantbot.solana.codec.b58decode`.
"""

from __future__ import annotations

import math
from functools import lru_cache

ALPHABET = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
BASE = len(ALPHABET)
_TO_ALPHABET = ALPHABET + bytes(256 - BASE)
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
