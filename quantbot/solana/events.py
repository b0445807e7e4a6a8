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

import bisect
import hashlib
import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from quantbot.solana.borsh import Layout
from quantbot.solana.codec import CodecError, b64decode
from quantbot.solana.transaction import Instruction, InstructionList, Transaction, program_ids_of, stack_heights_of

EVENT_IX_TAG = bytes.fromhex("e445a52e51cb9a1d")
"""First 8 bytes of an Anchor CPI-event instruction: `sha256("anchor:event")[:8]` reversed into LE."""
DISCRIMINATOR_SIZE = 8
CPI_EVENT_HEADER = len(EVENT_IX_TAG) + DISCRIMINATOR_SIZE
_DATA_PREFIX = "data: "
_LOG_PREFIX = "log: "
_PROGRAM_PREFIX = "Program "
_DATA_LINE = _PROGRAM_PREFIX + _DATA_PREFIX
_LOG_LINE = _PROGRAM_PREFIX + _LOG_PREFIX
_INVOKE_MARK = " invoke ["
_OUTER_POSITION = -1
"""Position of the outer instruction itself among its inner instructions (which count from 0)."""
_FIRST_CPI_HEIGHT = 2
"""Stack height of instructions an outer instruction invokes directly."""
_ORDER_STEP = 2
"""Events sort by `order`: 2*(position+1) for a CPI event instruction, one more for a log line printed
after the instruction at `position` ran, so log lines fall between the instructions around them."""


_new_tuple = tuple.__new__
"""`tuple.__new__`, to build `Event`s without the named tuple's Python-level constructor (hot path)."""


def inner_program_ids(tx: Transaction) -> list[list[str]]:
    """Per outer instruction, the program ids of its inner instructions (scanned many times per
    transaction: which programs ran, invocations, events, logs)."""
    # Inline for the two usual cases (normalised lists, and the empty lists of outer instructions that
    # ran none): most transactions have a dozen of those.
    return [
        inner.program_ids if type(inner) is InstructionList else program_ids_of(inner) if inner else []
        for inner in tx.inner
    ]


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
    `log_line_parser` reads the program's text-log events; it accepts only lines whose text (after
    `Program log: `) starts with `log_line_prefix`, so other lines need not be looked at.
    """

    program_id: str
    program: str
    specs: tuple[EventSpec, ...] = ()
    emits_logs: bool = False
    emits_both: bool = False
    log_line_parser: LogLineParser | None = None
    log_line_prefix: str = ""
    by_discriminator: dict[bytes, EventSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_discriminator", {s.discriminator: s for s in self.specs})


def anchor_event(layout: Layout) -> EventSpec:
    """An Anchor event whose name is the layout's name."""
    return EventSpec(layout.name, event_discriminator(layout.name), layout.decode)


def _no_fields(data: bytes, offset: int) -> dict[str, Any]:
    return {}


def named_event(name: str) -> EventSpec:
    """An Anchor event recognised by its name only (a pool's creation, a bookkeeping step): its payload
    is not read, and its `fields` are empty."""
    return EventSpec(name, event_discriminator(name), _no_fields)


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


def event_position(event: Event) -> int:
    """The inner position an event belongs to: its CPI instruction, or the instruction that logged it
    (-1: the outer instruction). An invocation whose range holds this position emitted the event."""
    position = event.inner if event.source == "cpi" else event.emitter
    return -1 if position is None else position


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
    inner_program_ids: list[str] | None = None,
) -> list[Event]:
    """CPI events of `programs` among inner instructions `first..last` of one outer instruction.

    Only instructions that can be events (a known program, exactly one account) have their data decoded;
    with `twins`, a dual-publishing program's event is read from its base64 log copy where one is found.
    `inner_program_ids` (the outer instruction's inner program ids, if the caller has them) saves
    reading them again.
    """
    inner_list = tx.inner[outer]
    # Conditional expressions rather than min/max: those builtins parse keyword arguments on every call.
    first = first if first > 0 else 0
    last = last if last < len(inner_list) else len(inner_list) - 1
    if last < first:
        return []
    pids = program_ids_of(inner_list) if inner_program_ids is None else inner_program_ids
    events: list[Event] = []
    by_program = registry.by_program
    for index in range(first, last + 1):
        pid = pids[index]
        if pid not in programs:
            continue
        ix = inner_list[index]
        if ix.num_accounts != 1:
            continue
        if twins is not None and ix.raw is None and pid in registry.dual_programs:
            twin = twins.payload(pid, outer, index, ix.data_b58)
            if twin is not None:
                ix.raw = EVENT_IX_TAG + twin
        data = ix.data
        if len(data) < CPI_EVENT_HEADER or not data.startswith(EVENT_IX_TAG):
            continue
        emitter = _cpi_emitter(tx, outer, index, ix, pids)
        event = _make_event(
            by_program[pid], data, CPI_EVENT_HEADER, "cpi", outer, index, emitter, _ORDER_STEP * (index + 1)
        )
        events.append(event)
    return events


_LOG_B58_RATIO = math.log(256) / math.log(58)
"""Base58 digits per byte: a payload of n bytes is about n times this many characters long."""


class LogTwins:
    """The `Program data:` log copies of dual-publishing programs' CPI events, by instruction; and the log
    events one instruction printed first, without walking the whole log (`frame_events`).

    Such a program (Pump.fun, PumpSwap) prints `Program data: <event>` and then invokes itself with the
    same event, so the log line right before its k-th `Program <id> invoke [..]` line is the k-th
    instruction of that program's event, in base64 (cheap) instead of base58 (slow). A copy is used only
    when it is exactly one data line, names one of the program's events and fits the instruction's
    base58 length; otherwise (truncated logs, other patterns) the instruction's own data is decoded.
    """

    __slots__ = ("_inner_program_ids", "_registry", "_text", "_tx")

    def __init__(
        self,
        tx: Transaction,
        registry: EventRegistry,
        inner_program_ids: list[list[str]] | None = None,
    ) -> None:
        self._tx = tx
        self._registry = registry
        self._inner_program_ids = inner_program_ids
        """Per outer instruction, its inner instructions' program ids (the decoder passes the ones it has)."""
        self._text: str | None = None

    def payload(self, program_id: str, outer: int, inner: int, data_b58: str | None) -> bytes | None:
        """The event bytes (discriminator and payload) logged for one CPI-event instruction, if found."""
        if not data_b58:
            return None
        text = self._data_line(program_id, self._ordinal(program_id, outer, inner))
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

    def _ordinal(self, program_id: str, outer: int, inner: int) -> int:
        """How many instructions of the program ran before inner instruction `inner` of `outer`."""
        inner_ids = self._inner_program_ids
        if inner_ids is None:
            inner_ids = self._inner_program_ids = inner_program_ids(self._tx)
        # In execution order: the program's outer instructions up to this one, its inner ones under the
        # earlier outer instructions, and those before this one under the same outer instruction.
        count = program_ids_of(self._tx.instructions)[: outer + 1].count(program_id)
        for earlier in inner_ids[:outer]:
            count += earlier.count(program_id)
        return count + inner_ids[outer][:inner].count(program_id)

    def frame_events(self, program_id: str, outer: int, inner: int) -> list[Event]:
        """The events in the log lines inner instruction `inner` of `outer` (one of `program_id`'s) printed
        before it invoked anything or ended: its own `Program data:` lines and the text-log lines its
        program's parser reads, as `log_events` would find them there.

        A program that logs its swap before moving tokens (Raydium AMM v4's `ray_log`, CPMM's `SwapEvent`)
        has it there; the lines of the frame after a call it made are not looked at.
        """
        text = self._logs_text()
        position = self._invoke_line(text, program_id, self._ordinal(program_id, outer, inner))
        if position < 0:
            return []
        program = self._registry.by_program[program_id]
        order = _ORDER_STEP * (inner + 1) + 1
        events: list[Event] = []
        start = text.find("\n", position + 1)  # the newline ending the invoke line
        while start >= 0:
            end = text.find("\n", start + 1)
            line = text[start + 1 :] if end < 0 else text[start + 1 : end]
            if line.startswith(_DATA_LINE):
                event = _data_event(line[len(_DATA_LINE) :], program, outer, inner, order)
            elif line.startswith(_LOG_LINE):
                event = None
                if program.log_line_parser is not None and line.startswith(program.log_line_prefix, len(_LOG_LINE)):
                    event = _text_event(line[len(_LOG_LINE) :], program, outer, inner, order)
            else:
                break  # a call, the frame's end, or a truncation notice
            if event is not None:
                events.append(event)
            start = end
        return events

    def _logs_text(self) -> str:
        """The log as one string, each line after a newline."""
        text = self._text
        if text is None:
            text = self._text = "\n".join(("", *(self._tx.logs or ())))
        return text

    @staticmethod
    def _invoke_line(text: str, program_id: str, ordinal: int) -> int:
        """Where the program's `ordinal`-th `Program <id> invoke [..]` line starts (its newline), or -1."""
        needle = f"\n{_PROGRAM_PREFIX}{program_id}{_INVOKE_MARK}"
        position = -1
        for _ in range(ordinal + 1):
            position = text.find(needle, position + 1)
            if position < 0:
                return -1
        return position

    def _data_line(self, program_id: str, ordinal: int) -> str | None:
        """The base64 of the lone `Program data:` line right before the program's `ordinal`-th invoke line,
        or (older program versions, which emitted the CPI copy first) right after that invocation ended, as
        the last line of the frame that made it."""
        text = self._logs_text()
        position = self._invoke_line(text, program_id, ordinal)
        if position < 0:
            return None
        start = text.rfind("\n", 0, position)  # the line before the invoke line starts after it
        if start < 0 or not text.startswith(_DATA_LINE, start + 1):
            return self._data_line_after(text, program_id, position)
        previous = text.rfind("\n", 0, start) if start > 0 else -1
        if previous >= 0 and text.startswith(_DATA_LINE, previous + 1):
            return None  # two data lines in a row: not a lone copy
        return text[start + 1 + len(_DATA_LINE) : position]

    @staticmethod
    def _data_line_after(text: str, program_id: str, position: int) -> str | None:
        """The base64 of the data line right after the event invocation whose invoke line starts at `position`:
        that invocation logs nothing but its end (`consumed`, then `success`), and the line after the data
        line ends the frame that invoked it (the same program's `consumed` or `success`)."""
        consumed = f"\n{_PROGRAM_PREFIX}{program_id} consumed "
        success = f"\n{_PROGRAM_PREFIX}{program_id} success"
        end = text.find("\n", position + 1)  # the newline ending the invoke line
        if end >= 0 and text.startswith(consumed, end):
            end = text.find("\n", end + 1)
        if end < 0 or not text.startswith(success, end):
            return None
        end = text.find("\n", end + 1)  # the newline ending the `success` line
        if end < 0 or not text.startswith(_DATA_LINE, end + 1):
            return None
        data_end = text.find("\n", end + 1)
        if data_end < 0 or not (text.startswith(consumed, data_end) or text.startswith(success, data_end)):
            return None
        return text[end + 1 + len(_DATA_LINE) : data_end]


def _cpi_emitter(tx: Transaction, outer: int, index: int, event_ix: Instruction, pids: list[str]) -> int | None:
    """The program instruction that emitted a CPI event: the nearest enclosing one of the same program."""
    pid = event_ix.program_id
    height = event_ix.stack_height
    by_outer = program_ids_of(tx.instructions)[outer] == pid
    if height == _FIRST_CPI_HEIGHT and by_outer:
        return None  # emitted by the outer instruction itself: nothing to search for
    inner_list = tx.inner[outer]
    for back in range(index - 1, -1, -1):
        if pids[back] != pid:
            continue
        candidate_height = inner_list[back].stack_height
        if height is None or candidate_height is None or candidate_height == height - 1:
            return back
    return None if by_outer else UNKNOWN_EMITTER


def _make_event(  # noqa: PLR0917 - positional on purpose: this runs once per event
    program: ProgramEvents,
    data: bytes,
    offset: int,
    source: str,
    outer: int,
    inner: int | None,
    emitter: int | None,
    order: int,
) -> Event:
    """The event whose discriminator ends at `offset` in `data` and whose payload follows it."""
    payload = data[offset - DISCRIMINATOR_SIZE :]
    disc = payload[:DISCRIMINATOR_SIZE]
    spec = program.by_discriminator.get(disc)
    fields: dict[str, Any] | None = None
    if spec is not None:
        try:
            fields = spec.decode(data, offset)
        except (ValueError, TypeError, IndexError, OverflowError):
            fields = None
    if spec is None or fields is None:
        name = f"{'cpi_event' if source == 'cpi' else 'log_event'}:{disc.hex()}"
        fields = {}
    else:
        name = spec.name
    return _new_tuple(
        Event, (program.program_id, program.program, name, disc, fields, source, outer, inner, emitter, order, payload)
    )


class _ExecutionOrder:
    """Every instruction in execution order (each outer instruction, then its inner ones), as parallel
    lists of program ids and stack heights; `place` turns a position in them back into (outer, inner)."""

    __slots__ = ("heights", "program_ids", "starts")

    def __init__(self, tx: Transaction, inner_ids: list[list[str]]) -> None:
        program_ids: list[str] = []
        heights: list[int | None] = []
        starts: list[int] = []
        for outer, program_id in enumerate(program_ids_of(tx.instructions)):
            starts.append(len(program_ids))
            program_ids.append(program_id)
            heights.append(1)
            inner = tx.inner[outer]
            if inner:
                program_ids += inner_ids[outer]
                heights += stack_heights_of(inner)
        self.program_ids = program_ids
        self.heights = heights
        self.starts = starts
        """Position of each outer instruction."""

    def find(self, program_id: str, depth: int | None, start: int) -> int:
        """The first instruction from `start` on of `program_id` at stack height `depth` (-1: none)."""
        program_ids = self.program_ids
        heights = self.heights
        while True:
            try:
                found = program_ids.index(program_id, start)
            except ValueError:
                return -1
            height = heights[found]
            if depth is None or height is None or height == depth:
                return found
            start = found + 1

    def place(self, position: int) -> tuple[int, int]:
        """(outer index, inner position) of the instruction at `position` (-1: the outer one itself)."""
        outer = bisect.bisect_right(self.starts, position) - 1
        return outer, position - self.starts[outer] - 1


def log_events(
    tx: Transaction,
    registry: EventRegistry,
    present: frozenset[str],
    inner_ids: list[list[str]] | None = None,
) -> list[Event]:
    """Events published in log lines (`Program data:` or text) by the `present` programs, in order.

    Each `Program <id> invoke [n]` line is matched to the next instruction of that program (at that
    stack height) in execution order, so a data or log line belongs to the innermost invocation still
    running. `inner_ids` are the inner instructions' program ids per outer instruction, if known.
    """
    logs = tx.logs
    if not logs:
        return []
    by_program = registry.by_program
    # Only data lines, and log lines a text-log parser of a program here accepts, can be events: the
    # lines after the last of them change nothing, so the walk below stops there.
    text_lines = tuple(
        _LOG_LINE + program.log_line_prefix
        for program in map(by_program.get, present)
        if program is not None and program.log_line_parser is not None
    )
    candidates = (_DATA_LINE, *text_lines)
    end = len(logs)
    while end and not logs[end - 1].startswith(candidates):
        end -= 1
    if not end:
        return []
    flat = _ExecutionOrder(tx, inner_program_ids(tx) if inner_ids is None else inner_ids)
    pids, heights = flat.program_ids, flat.heights
    cursor = 0
    stack: list[int] = []  # positions in `flat`, -1 for an invocation that could not be matched
    last = -1  # position in `flat` of the most recently invoked instruction
    events: list[Event] = []
    prefix = len(_PROGRAM_PREFIX)
    for line in itertools.islice(logs, end):
        # The commonest lines first; `startswith`/`find` from an offset skip `Program ` without a copy.
        is_log = line.startswith(_LOG_LINE)
        if (is_log and line.startswith(text_lines)) or line.startswith(_DATA_LINE):
            frame = stack[-1] if stack else -1
            if frame < 0 or pids[frame] not in present:
                continue
            outer, position = flat.place(frame)
            inner = None if position == _OUTER_POSITION else position
            last_position = position
            if last >= 0:
                last_outer, invoked = flat.place(last)
                if last_outer == outer:
                    last_position = invoked
            # A log line comes after the instructions invoked so far: odd orders sort between them.
            order = _ORDER_STEP * (last_position + 1) + 1
            program = by_program[pids[frame]]
            if is_log:
                event = _text_event(line[len(_LOG_LINE) :], program, outer, inner, order)
            else:
                event = _data_event(line[len(_DATA_LINE) :], program, outer, inner, order)
            if event is not None:
                events.append(event)
        elif is_log:
            continue  # a text log line no parser here accepts
        elif not line.startswith(_PROGRAM_PREFIX):
            if line.startswith("Log truncated"):
                break
        elif line.endswith("]") and line.find(_INVOKE_MARK, prefix) >= 0:
            pid = line[prefix : line.find(" ", prefix)]
            depth_text = line[line.rfind("[") + 1 : -1]
            depth = int(depth_text) if depth_text.isdigit() else None
            if cursor < len(pids) and pids[cursor] == pid and (depth is None or heights[cursor] in (None, depth)):
                found = cursor  # the usual case: the log invokes exactly the next instruction
            else:
                found = flat.find(pid, depth, cursor)
            if found >= 0:
                cursor = found + 1
                last = found
            stack.append(found)
        elif (line.endswith(" success", prefix) or line.find(" failed", prefix) >= 0) and stack:
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
    return _make_event(program, data, DISCRIMINATOR_SIZE, "log", outer, inner, inner, order)


def _text_event(text: str, program: ProgramEvents, outer: int, inner: int | None, order: int) -> Event | None:
    """The event of a `Program log: ...` line, for programs with a text-log parser (`ray_log`)."""
    parser = program.log_line_parser
    parsed = parser(text) if parser is not None else None
    if parsed is None:
        return None
    name, disc, fields = parsed
    return Event(program.program_id, program.program, name, disc, fields, "log", outer, inner, inner, order, disc)
