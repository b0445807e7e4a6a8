"""Protocol events of a transaction: Anchor CPI events, `Program data:` logs and text-log events.

Three encodings carry the events DEX programs publish about their own trades:

- Anchor `emit_cpi!`: an inner instruction of the program to itself, with one account (its event
  authority), whose data is `EVENT_IX_TAG`, the event discriminator and the Borsh payload;
- Anchor `emit!`: a `Program data: <base64(discriminator + payload)>` log line in the program's frame;
- program-specific text logs, e.g. Raydium AMM v4's `Program log: ray_log: <base64>`.

Discriminators are `sha256("event:<Name>")[:8]`, computed once when a `ProgramEvents` is built.

`collect_events` returns them in execution order with their position: the outer instruction, the inner
index of the CPI-event instruction (or, for a log line, of the instruction whose frame printed it; None
for the outer instruction itself), and the emitting program instruction. Logs are attributed to
instructions by matching each `Program <id> invoke [n]` line to the next instruction of that program in
execution order. A CPI copy and a log copy of the same event (same program, outer instruction and bytes)
count once, keeping the CPI copy, which survives log truncation.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from quantbot.solana.borsh import Layout
from quantbot.solana.codec import CodecError, b64decode
from quantbot.solana.transaction import Instruction, Transaction

EVENT_IX_TAG = bytes.fromhex("e445a52e51cb9a1d")
"""First 8 bytes of an Anchor CPI-event instruction: `sha256("anchor:event")[:8]` reversed into LE."""
DISCRIMINATOR_SIZE = 8
CPI_EVENT_HEADER = len(EVENT_IX_TAG) + DISCRIMINATOR_SIZE
_DATA_PREFIX = "data: "
_LOG_PREFIX = "log: "
_PROGRAM_PREFIX = "Program "
_INVOKE_MARK = " invoke ["
_OUTER_POSITION = -1
_FIRST_CPI_HEIGHT = 2
"""Stack height of instructions an outer instruction invokes directly."""
_ORDER_STEP = 2
"""Events sort by `order`: 2*(position+1) for a CPI event instruction, one more for a log line printed
after the instruction at `position` ran, so log lines fall between the instructions around them."""
"""Position of the outer instruction itself among its inner instructions (which count from 0)."""


def event_discriminator(name: str) -> bytes:
    """Anchor's discriminator of the event `name`: `sha256("event:<name>")[:8]`."""
    return hashlib.sha256(f"event:{name}".encode()).digest()[:DISCRIMINATOR_SIZE]


def instruction_discriminator(name: str) -> bytes:
    """Anchor's discriminator of the instruction `name` (snake case): `sha256("global:<name>")[:8]`."""
    return hashlib.sha256(f"global:{name}".encode()).digest()[:DISCRIMINATOR_SIZE]


EventDecoder = Callable[[bytes, int], dict[str, Any] | None]
"""Decodes an event payload starting at an offset into fields, or None when it does not fit."""
LogLineParser = Callable[[str], tuple[str, bytes, dict[str, Any]] | None]
"""Parses the text after `Program log: ` into (event name, discriminator, fields), or None."""


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One event type of one program: its name, discriminator and payload decoder."""

    name: str
    discriminator: bytes
    decode: EventDecoder


@dataclass(frozen=True, slots=True)
class ProgramEvents:
    """The events one program publishes and how: CPI instructions, `Program data:` logs, text logs.

    `emits_logs` says whether the program publishes (some) events only as logs, so logs must be read
    whenever it takes part; programs that publish CPI copies are read from logs only as a fallback.
    `emits_both` says that every event is published twice, as a log line right before the CPI-event
    instruction (Pump.fun, PumpSwap): the log copy, base64, then stands in for decoding the base58 one.
    """

    program_id: str
    program: str
    specs: tuple[EventSpec, ...] = ()
    emits_logs: bool = False
    emits_both: bool = False
    log_line_parser: LogLineParser | None = None
    by_discriminator: dict[bytes, EventSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_discriminator", {s.discriminator: s for s in self.specs})


def anchor_event(layout: Layout) -> EventSpec:
    """An Anchor event whose name is the layout's name."""
    return EventSpec(layout.name, event_discriminator(layout.name), layout.decode)


class Event(NamedTuple):
    """One decoded event with its place in the transaction.

    `inner` is the natural-key position: the CPI-event instruction's inner index, or for a log line the
    inner index of the instruction that printed it (None: the outer instruction). `emitter` is the inner
    index of the program instruction that emitted the event (None: the outer instruction; -2: unknown).
    `order` sorts events of one outer instruction in execution order.
    """

    program_id: str
    program: str
    name: str
    discriminator: bytes
    fields: dict[str, Any]
    source: str
    outer: int
    inner: int | None
    emitter: int | None
    order: int
    payload: bytes

    @property
    def known(self) -> bool:
        """Whether the discriminator matched a known event layout (else `fields` is empty)."""
        return bool(self.fields) or not self.name.startswith(("cpi_event:", "log_event:"))


UNKNOWN_EMITTER = -2


class EventRegistry:
    """The programs whose events are decoded, by program id."""

    __slots__ = ("by_program", "dual_programs", "ids", "log_programs")

    def __init__(self, programs: Iterable[ProgramEvents]) -> None:
        self.by_program: dict[str, ProgramEvents] = {p.program_id: p for p in programs}
        self.ids = frozenset(self.by_program)
        self.log_programs = frozenset(p.program_id for p in self.by_program.values() if p.emits_logs)
        self.dual_programs = frozenset(p.program_id for p in self.by_program.values() if p.emits_both)


def programs_present(tx: Transaction, registry: EventRegistry) -> frozenset[str]:
    """The registry's programs among the transaction's accounts (a superset of those invoked)."""
    return registry.ids.intersection(tx.account_keys)


def collect_events(tx: Transaction, registry: EventRegistry, *, dedupe: bool = True) -> list[Event]:
    """Decode every event of the registry's programs in `tx`, in execution order.

    Args:
        tx: the transaction.
        registry: programs and their event layouts.
        dedupe: drop log copies of events that also have a CPI copy. False reads every copy (for audits);
            True reads logs only where a program publishes events solely there, or left no CPI copy.

    Returns:
        Events sorted by (outer instruction, execution order).
    """
    present = programs_present(tx, registry)
    if not present:
        return []
    events = cpi_events(tx, registry, present)
    with_cpi = {e.program_id for e in events}
    wants_logs = not dedupe or bool(present & registry.log_programs) or bool(present - with_cpi)
    if wants_logs and tx.logs:
        events = merge_events(events, log_events(tx, registry, present), dedupe=dedupe)
    else:
        events.sort(key=_order_key)
    return events


def merge_events(cpi: list[Event], logs: list[Event], *, dedupe: bool = True) -> list[Event]:
    """CPI and log events in execution order, a log copy of a CPI event dropped when `dedupe`."""
    merged = _merge(cpi, logs, dedupe) if logs else list(cpi)
    merged.sort(key=_order_key)
    return merged


def _order_key(event: Event) -> tuple[int, int]:
    return (event.outer, event.order)


def _merge(cpi: list[Event], logs: list[Event], dedupe: bool) -> list[Event]:
    if not dedupe or not cpi:
        return cpi + logs
    seen: dict[tuple[int, str, bytes], int] = {}
    for event in cpi:
        key = (event.outer, event.program_id, event.payload)
        seen[key] = seen.get(key, 0) + 1
    merged = list(cpi)
    for event in logs:
        key = (event.outer, event.program_id, event.payload)
        count = seen.get(key, 0)
        if count:
            seen[key] = count - 1
        else:
            merged.append(event)
    return merged


def cpi_events(tx: Transaction, registry: EventRegistry, present: frozenset[str]) -> list[Event]:
    """Events published as Anchor CPI-event instructions by the `present` programs, in order."""
    events: list[Event] = []
    for outer, inner_list in enumerate(tx.inner):
        events.extend(cpi_events_between(tx, registry, present, outer, first=0, last=len(inner_list) - 1))
    return events


def cpi_events_between(
    tx: Transaction,
    registry: EventRegistry,
    programs: frozenset[str],
    outer: int,
    *,
    first: int,
    last: int,
    twins: LogTwins | None = None,
) -> list[Event]:
    """CPI events of `programs` among inner instructions `first..last` of one outer instruction.

    Only instructions that can be events (a known program, exactly one account) have their data decoded;
    with `twins`, a dual-publishing program's event is read from its base64 log copy where one is found.
    """
    events: list[Event] = []
    by_program = registry.by_program
    inner_list = tx.inner[outer]
    for index in range(max(first, 0), min(last, len(inner_list) - 1) + 1):
        ix = inner_list[index]
        pid = ix.program_id
        if pid not in programs or ix.num_accounts != 1:
            continue
        if twins is not None and ix.raw is None and pid in registry.dual_programs:
            twin = twins.payload(pid, outer, index, ix.data_b58)
            if twin is not None:
                ix.raw = EVENT_IX_TAG + twin
        data = ix.data
        if len(data) < CPI_EVENT_HEADER or not data.startswith(EVENT_IX_TAG):
            continue
        program = by_program[pid]
        disc = data[len(EVENT_IX_TAG) : CPI_EVENT_HEADER]
        events.append(
            _make_event(
                program,
                disc,
                data=data,
                offset=CPI_EVENT_HEADER,
                source="cpi",
                outer=outer,
                inner=index,
                emitter=_cpi_emitter(tx, outer, index, ix),
                order=_ORDER_STEP * (index + 1),
            )
        )
    return events


_LOG_B58_RATIO = math.log(256) / math.log(58)
"""Base58 digits per byte: a payload of n bytes is about n times this many characters long."""


class LogTwins:
    """The `Program data:` log copies of dual-publishing programs' CPI events, by instruction.

    Such a program (Pump.fun, PumpSwap) prints `Program data: <event>` and then invokes itself with the
    same event, so the log line right before its k-th `Program <id> invoke [..]` line is the k-th
    instruction of that program's event, in base64 (cheap) instead of base58 (slow). A copy is used only
    when it is exactly one data line, names one of the program's events and fits the instruction's
    base58 length; otherwise (truncated logs, other patterns) the instruction's own data is decoded.
    """

    __slots__ = ("_lines", "_ordinals", "_registry", "_text", "_tx")

    def __init__(self, tx: Transaction, registry: EventRegistry) -> None:
        self._tx = tx
        self._registry = registry
        self._text: str | None = None
        self._lines: dict[str, list[str | None]] = {}
        self._ordinals: dict[str, dict[tuple[int, int | None], int]] = {}

    def payload(self, program_id: str, outer: int, inner: int, data_b58: str | None) -> bytes | None:
        """The event bytes (discriminator and payload) logged for one CPI-event instruction, if found."""
        if not data_b58:
            return None
        ordinal = self._ordinal(program_id, outer, inner)
        lines = self._data_lines(program_id)
        if ordinal is None or ordinal >= len(lines):
            return None
        text = lines[ordinal]
        if text is None:
            return None
        try:
            payload = b64decode(text)
        except CodecError:
            return None
        program = self._registry.by_program[program_id]
        if payload[:DISCRIMINATOR_SIZE] not in program.by_discriminator:
            return None
        expected = (len(EVENT_IX_TAG) + len(payload)) * _LOG_B58_RATIO
        if abs(len(data_b58) - expected) > 1:
            return None
        return payload

    def _ordinal(self, program_id: str, outer: int, inner: int) -> int | None:
        ordinals = self._ordinals.get(program_id)
        if ordinals is None:
            ordinals = {}
            tx = self._tx
            for position, ix in enumerate(tx.instructions):
                if ix.program_id == program_id:
                    ordinals[(position, None)] = len(ordinals)
                for index, inner_ix in enumerate(tx.inner[position]):
                    if inner_ix.program_id == program_id:
                        ordinals[(position, index)] = len(ordinals)
            self._ordinals[program_id] = ordinals
        return ordinals.get((outer, inner))

    def _data_lines(self, program_id: str) -> list[str | None]:
        lines = self._lines.get(program_id)
        if lines is None:
            text = self._text
            if text is None:
                text = self._text = "\n" + "\n".join(self._tx.logs or ())
            lines = []
            needle = f"\n{_PROGRAM_PREFIX}{program_id}{_INVOKE_MARK}"
            data_mark = _PROGRAM_PREFIX + _DATA_PREFIX
            position = text.find(needle)
            while position >= 0:
                start = text.rfind("\n", 0, position)
                line = text[start + 1 : position]
                before = text[text.rfind("\n", 0, max(start, 0)) + 1 : start] if start > 0 else ""
                if line.startswith(data_mark) and not before.startswith(data_mark):
                    lines.append(line[len(data_mark) :])
                else:
                    lines.append(None)
                position = text.find(needle, position + 1)
            self._lines[program_id] = lines
        return lines


def _cpi_emitter(tx: Transaction, outer: int, index: int, event_ix: Instruction) -> int | None:
    """The program instruction that emitted a CPI event: the nearest enclosing one of the same program."""
    pid = event_ix.program_id
    height = event_ix.stack_height
    if height == _FIRST_CPI_HEIGHT and tx.instructions[outer].program_id == pid:
        return None  # emitted by the outer instruction itself: nothing to search for
    inner_list = tx.inner[outer]
    for back in range(index - 1, -1, -1):
        candidate = inner_list[back]
        if candidate.program_id != pid:
            continue
        if height is None or candidate.stack_height is None or candidate.stack_height == height - 1:
            return back
    if tx.instructions[outer].program_id == pid:
        return None
    return UNKNOWN_EMITTER


def _make_event(
    program: ProgramEvents,
    disc: bytes,
    *,
    data: bytes,
    offset: int,
    source: str,
    outer: int,
    inner: int | None,
    emitter: int | None,
    order: int,
) -> Event:
    spec = program.by_discriminator.get(disc)
    fields: dict[str, Any] | None = None
    if spec is not None:
        try:
            fields = spec.decode(data, offset)
        except (ValueError, TypeError, IndexError, OverflowError):
            fields = None
    if spec is None or fields is None:
        label = "cpi_event" if source == "cpi" else "log_event"
        return Event(
            program.program_id,
            program.program,
            f"{label}:{disc.hex()}",
            disc,
            {},
            source,
            outer,
            inner,
            emitter,
            order,
            data[offset - DISCRIMINATOR_SIZE :],
        )
    return Event(
        program.program_id,
        program.program,
        spec.name,
        disc,
        fields,
        source,
        outer,
        inner,
        emitter,
        order,
        data[offset - DISCRIMINATOR_SIZE :],
    )


def _execution_order(tx: Transaction) -> list[tuple[int, int, str, int | None]]:
    """Every instruction as (outer, inner position, program id, stack height), in execution order."""
    flat: list[tuple[int, int, str, int | None]] = []
    for outer, ix in enumerate(tx.instructions):
        flat.append((outer, _OUTER_POSITION, ix.program_id, 1))
        for index, inner_ix in enumerate(tx.inner[outer]):
            flat.append((outer, index, inner_ix.program_id, inner_ix.stack_height))
    return flat


def log_events(tx: Transaction, registry: EventRegistry, present: frozenset[str]) -> list[Event]:
    """Events published in log lines (`Program data:` or text) by the `present` programs, in order."""
    logs = tx.logs
    if not logs:
        return []
    by_program = registry.by_program
    flat = _execution_order(tx)
    cursor = 0
    stack: list[int] = []  # indexes into `flat`, -1 for an invocation that could not be matched
    last = -1  # index into `flat` of the most recently invoked instruction
    events: list[Event] = []
    for line in logs:
        if not line.startswith(_PROGRAM_PREFIX):
            if line.startswith("Log truncated"):
                break
            continue
        rest = line[len(_PROGRAM_PREFIX) :]
        is_data = rest.startswith(_DATA_PREFIX)
        if is_data or rest.startswith(_LOG_PREFIX):
            frame = stack[-1] if stack else -1
            if frame < 0 or flat[frame][2] not in present:
                continue
            outer, position, pid, _ = flat[frame]
            inner = None if position == _OUTER_POSITION else position
            last_position = flat[last][1] if last >= 0 and flat[last][0] == outer else position
            # A log line comes after the instructions invoked so far: odd orders sort between them.
            order = _ORDER_STEP * (last_position + 1) + 1
            if is_data:
                event = _data_event(rest[len(_DATA_PREFIX) :], by_program[pid], outer, inner, order)
            else:
                event = _text_event(rest[len(_LOG_PREFIX) :], by_program[pid], outer, inner, order)
            if event is not None:
                events.append(event)
        elif rest.endswith("]") and _INVOKE_MARK in rest:
            pid = rest[: rest.find(" ")]
            depth_text = rest[rest.rfind("[") + 1 : -1]
            depth = int(depth_text) if depth_text.isdigit() else None
            found = -1
            for k in range(cursor, len(flat)):
                entry = flat[k]
                if entry[2] == pid and (depth is None or entry[3] is None or entry[3] == depth):
                    found = k
                    break
            if found >= 0:
                cursor = found + 1
                last = found
            stack.append(found)
        elif (rest.endswith(" success") or " failed" in rest) and stack:
            stack.pop()
    return events


def _data_event(text: str, program: ProgramEvents, outer: int, inner: int | None, order: int) -> Event | None:
    """The event of a `Program data: <base64>` line, if the program publishes one there."""
    try:
        data = b64decode(text.split(" ", 1)[0])
    except CodecError:
        return None
    if len(data) < DISCRIMINATOR_SIZE:
        return None
    return _make_event(
        program,
        data[:DISCRIMINATOR_SIZE],
        data=data,
        offset=DISCRIMINATOR_SIZE,
        source="log",
        outer=outer,
        inner=inner,
        emitter=inner,
        order=order,
    )


def _text_event(text: str, program: ProgramEvents, outer: int, inner: int | None, order: int) -> Event | None:
    """The event of a `Program log: ...` line, for programs with a text-log parser (`ray_log`)."""
    parser = program.log_line_parser
    parsed = parser(text) if parser is not None else None
    if parsed is None:
        return None
    name, disc, fields = parsed
    return Event(program.program_id, program.program, name, disc, fields, "log", outer, inner, inner, order, disc)
