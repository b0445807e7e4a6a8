"""Decode transactions into activities: trades, liquidity changes, pool creations and transfers.

`decode_transaction` walks each outer instruction down to the first instruction of a known program
(an aggregator or a DEX; a wrapper program a bot calls is looked through), hands that invocation and the
events beneath it to the program's decoder, and falls back to balance-derived readings (an unknown
program's swap, plain transfers) when no known program recognised anything. Failed transactions yield
nothing. After decoding, a swap's non-SOL leg whose mint no other swap of the trader touches is set
to the trader's net change of that mint: what the trader really gave or got, fees taken outside the
pools included (SOL legs keep the event's amount: the trader's SOL change also pays rent and tips).

Cost (DESIGN §7 asks 10,000 transactions/s per core, parsing included): every instruction's program id
is read once into plain lists (`Context`), which all the scans use; an instruction is built, and its
data decoded, only when a decoder reads it; and the context holds no closure, since a reference cycle
would keep each transaction's objects alive until the cyclic garbage collector ran.

A decoder that raises makes the whole transaction a `DecodeError` (naming the program, the instruction
and the exception), never a partial or balance-derived reading: a decoder bug must not store wrong
trades. The flow turns it into a dead letter (`quantbot.steps.parse_frame`), which replays once the
decoder is fixed.

`decode_files` is what `quantbot decode PATH...` runs; `activity_to_json` is the JSON shape it prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson

from quantbot.models import WSOL_MINT, Activity, ActivityKind, Hop, TokenAmount
from quantbot.solana.context import Context, Invocation
from quantbot.solana.events import (
    Event,
    EventRegistry,
    LogTwins,
    cpi_events_between,
    event_position,
    log_events,
    merge_events,
)
from quantbot.solana.normalise import TransactionFormatError, parse_transactions
from quantbot.solana.programs import catalog, dflow, generic, jupiter, okx, raydium_route, transfer
from quantbot.solana.programs.catalog import Decoder
from quantbot.solana.transaction import Transaction

AGGREGATOR_DECODERS: dict[str, Decoder] = {
    jupiter.PROGRAM_ID: jupiter.decode,
    dflow.PROGRAM_ID: dflow.decode,
    raydium_route.PROGRAM_ID: raydium_route.decode,
    okx.PROGRAM_ID: okx.decode,
}
DECODERS: dict[str, Decoder] = {**catalog.DEX_DECODERS, **AGGREGATOR_DECODERS}
KNOWN_PROGRAMS = frozenset(DECODERS)
DEX_PROGRAMS = frozenset(catalog.DEX_DECODERS)
_OTHER_DEX_PROGRAMS = {program_id: DEX_PROGRAMS - {program_id} for program_id in DEX_PROGRAMS}
"""Per DEX program, the other DEX programs (those it may call)."""
PROGRAM_NAMES: dict[str, str] = {
    **catalog.NAMES,
    jupiter.PROGRAM_ID: jupiter.NAME,
    dflow.PROGRAM_ID: dflow.NAME,
    raydium_route.PROGRAM_ID: raydium_route.NAME,
    okx.PROGRAM_ID: okx.NAME,
}
"""Program id -> the short name used as `venue` and hop `program`."""
REGISTRY = EventRegistry([*catalog.DEX_EVENTS, jupiter.EVENTS, dflow.EVENTS])

SUFFIXES = (".json", ".jsonl")
"""Files a directory argument contributes to `decode_files`."""


class DecodeError(Exception):  # not RuntimeError: mypyc compiles subclasses of Exception, not of that
    """Decoding a transaction raised: in a program's decoder (`program_id` set) or around them.

    The message names the signature, the program (name and id), the instruction (`outer`, and `inner`
    for an inner one) and the exception (type and message); the exception is also `__cause__`.
    """

    def __init__(
        self,
        signature: str,
        cause: Exception,
        program_id: str | None = None,
        outer: int | None = None,
        inner: int | None = None,
    ) -> None:
        self.signature = signature
        self.cause = cause
        self.program_id = program_id
        self.program = PROGRAM_NAMES.get(program_id, "unknown") if program_id is not None else None
        """The program's short name (`venue`), None when the failure was outside a program decoder."""
        self.outer = outer
        self.inner = inner
        failure = f"{type(cause).__name__}: {cause}"
        if program_id is None:
            message = f"decoding {signature} failed outside a program decoder: {failure}"
        else:
            where = f"outer instruction {outer}" if inner is None else f"inner instruction {outer}/{inner}"
            message = f"{self.program} decoder ({program_id}) failed on {signature} at {where}: {failure}"
        super().__init__(message)


def decode_transaction(tx: Transaction) -> list[Activity]:
    """Every activity recognised in one transaction, in instruction order.

    Args:
        tx: a normalised transaction.

    Returns:
        The activities; empty for a failed transaction or one without anything recognised.

    Raises:
        DecodeError: a program decoder (or the decoding around them) raised; nothing of the transaction
            is returned, not even a balance-derived reading, since that would be a wrong one.
    """
    try:
        return _decode(tx)
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(tx.signature, exc) from exc


EVENT_AGGREGATORS = frozenset({jupiter.PROGRAM_ID, dflow.PROGRAM_ID})
"""Aggregators that publish one event per hop, so their pools' own events are not needed."""
_ONLY = {program_id: frozenset({program_id}) for program_id in EVENT_AGGREGATORS}
"""Each event aggregator's id as the one-program set `cpi_events_between` takes."""
_RESERVE_PROGRAMS = frozenset(catalog.RESERVES_AFTER)
"""Pool programs whose swap events carry the pool's reserves: read beneath an event aggregator's route too."""


def _decode(tx: Transaction) -> list[Activity]:
    if tx.err is not None:
        return []
    ctx = Context(tx, _decode_beneath)
    invoked = set(ctx.outer_program_ids).union(*ctx.inner_program_ids)
    activities = _decode_known(ctx, invoked) if not KNOWN_PROGRAMS.isdisjoint(invoked) else []
    if not activities:
        activities = generic.decode_balances(ctx) or transfer.decode(ctx)
    return _settle_legs(activities)


def _decode_known(ctx: Context, invoked: set[str]) -> list[Activity]:
    """Activities of the known programs' invocations, outer instruction by outer instruction."""
    tx = ctx.tx
    inner_ids = ctx.inner_program_ids
    present = REGISTRY.ids.intersection(invoked)  # the registry's programs that ran: whose events to read
    activities: list[Activity] = []
    for outer, program_id in enumerate(ctx.outer_program_ids):
        if program_id in KNOWN_PROGRAMS:
            last = len(inner_ids[outer]) - 1
            invocations = [Invocation(program_id, outer, None, tx.instructions[outer], last)]
        elif KNOWN_PROGRAMS.isdisjoint(inner_ids[outer]):
            continue  # no known program ran here (compute budget, memo, token plumbing, ...)
        else:
            invocations = _invocations(ctx, outer, 0, len(inner_ids[outer]) - 1, KNOWN_PROGRAMS)
        for inv in invocations:
            try:
                inv.events = _events_of(ctx, inv, present)
            except Exception as exc:
                raise _failure(ctx, inv, exc) from exc
            activities.extend(_run(DECODERS[inv.program_id], inv, ctx))
            if inv.program_id not in AGGREGATOR_DECODERS:
                # A pool program calling another (a curve migrating into an AMM): decode the callee too.
                activities.extend(_decode_beneath(ctx, inv, exclude=inv.program_id))
    return activities


def _events_of(ctx: Context, inv: Invocation, present: frozenset[str]) -> list[Event]:
    """The events a top-level invocation needs, read as lazily as possible (decoding is the slow part).

    A Jupiter or DFlow route needs its own per-hop CPI events, and of its pools' events only the swaps of
    pools whose events carry their reserves (for its hops' `reserves`, `_pool_events`). Elsewhere every
    known program's CPI events beneath the invocation count, and logs are read when a program there
    publishes in logs, or publishes CPI events but left none (an old version).
    """
    tx = ctx.tx
    outer, first, last = inv.outer, inv.start + 1, inv.end
    pids = ctx.inner_program_ids[outer]
    if inv.program_id in EVENT_AGGREGATORS:
        own = cpi_events_between(
            tx, REGISTRY, _ONLY[inv.program_id], outer, first=first, last=last, inner_program_ids=pids
        )
        if own:
            pools = _RESERVE_PROGRAMS & present
            if not pools or pools.isdisjoint(pids[first : last + 1]):
                return own
            return merge_events(own, _pool_events(ctx, inv, pools))
    if not present:
        return []
    twins = None
    if tx.logs and not present.isdisjoint(REGISTRY.dual_programs):
        twins = ctx.log_twins
        if twins is None:
            twins = ctx.log_twins = LogTwins(tx, REGISTRY, ctx.inner_program_ids)
    events = cpi_events_between(
        tx, REGISTRY, present, outer, first=first, last=last, twins=twins, inner_program_ids=pids
    )
    if tx.logs and _needs_logs(inv, present, events, pids):
        if ctx.log_events is None:
            ctx.log_events = log_events(tx, REGISTRY, present, ctx.inner_program_ids)
        logged = [e for e in ctx.log_events if e.outer == outer and inv.covers(event_position(e))]
        events = merge_events(events, logged)
    return events


def _pool_events(ctx: Context, inv: Invocation, pools: frozenset[str]) -> list[Event]:
    """The events of the `pools` programs an aggregator's route called: their CPI events, and for those that
    publish in logs the first lines of each of their instructions' frames, where they log their swaps (the
    whole log is not walked: `LogTwins.frame_events`)."""
    tx = ctx.tx
    outer, first, last = inv.outer, inv.start + 1, inv.end
    pids = ctx.inner_program_ids[outer]
    twins = ctx.log_twins
    if twins is None and tx.logs:
        twins = ctx.log_twins = LogTwins(tx, REGISTRY, ctx.inner_program_ids)
    events = cpi_events_between(tx, REGISTRY, pools, outer, first=first, last=last, twins=twins, inner_program_ids=pids)
    logged = pools & REGISTRY.log_programs
    if twins is not None and logged:
        for index in range(first, last + 1):
            if pids[index] in logged:
                events.extend(twins.frame_events(pids[index], outer, index))
    return events


def _needs_logs(inv: Invocation, present: frozenset[str], events: list[Event], pids: list[str]) -> bool:
    """Whether a program beneath an invocation publishes events only in logs (or left no CPI copy)."""
    with_cpi = {e.program_id for e in events}
    suspects = (present - with_cpi) | (present & REGISTRY.log_programs)
    if not suspects:
        return False
    if inv.program_id in suspects:
        return True
    return not suspects.isdisjoint(pids[inv.start + 1 : inv.end + 1])


def _run(decoder: Decoder, inv: Invocation, ctx: Context) -> list[Activity]:
    try:
        return decoder(inv, ctx) or []
    except DecodeError:
        raise  # a program this one called (`ctx.beneath`) failed: that one is named
    except Exception as exc:
        raise _failure(ctx, inv, exc) from exc


def _failure(ctx: Context, inv: Invocation, exc: Exception) -> DecodeError:
    """The `DecodeError` of an invocation whose decoding raised `exc`."""
    return DecodeError(ctx.tx.signature, exc, inv.program_id, inv.outer, inv.inner)


def _decode_beneath(ctx: Context, parent: Invocation, exclude: str | None = None) -> list[Activity]:
    """Activities of the DEX programs an invocation called (but `exclude`, the caller's own program)."""
    first, last = parent.start + 1, parent.end
    callees = DEX_PROGRAMS if exclude is None else _OTHER_DEX_PROGRAMS.get(exclude, DEX_PROGRAMS)
    if first > last or callees.isdisjoint(ctx.inner_program_ids[parent.outer][first : last + 1]):
        return []  # (a program's own event instructions beneath it are no call to decode)
    out: list[Activity] = []
    for inv in _invocations(ctx, parent.outer, first, last, DEX_PROGRAMS):
        if inv.program_id != exclude:
            inv.events = [e for e in parent.events if inv.covers(event_position(e))]
            out.extend(_run(DECODERS[inv.program_id], inv, ctx))
    return out


def _invocations(ctx: Context, outer: int, start: int, end: int, known: frozenset[str]) -> list[Invocation]:
    """Inner instructions of known programs between positions `start..end` that no known program called.

    Each one covers the instructions after it that ran deeper (a higher stack height); without stack
    heights, only its own event instructions (same program, one account).
    """
    inner = ctx.tx.inner[outer]
    pids = ctx.inner_program_ids[outer]
    heights = ctx.heights(outer)
    found: list[Invocation] = []
    index = start
    while index <= end:
        pid = pids[index]
        if pid not in known:
            index += 1
            continue
        height = heights[index]
        last = index + 1
        while last <= end:
            child_height = heights[last]
            if child_height is not None and height is not None:
                if child_height <= height:
                    break
            elif pids[last] != pid or inner[last].num_accounts != 1:
                break
            last += 1
        found.append(Invocation(pid, outer, index, inner[index], last - 1))
        index = last
    return found


def _settle_legs(activities: list[Activity]) -> list[Activity]:
    """Set each swap's non-SOL legs to the trader's net change where only that swap moves the mint."""
    swap = ActivityKind.SWAP
    legs = [
        (item.trader, leg.mint)
        for item in activities
        if item.kind is swap
        for leg in (item.input, item.output)
        if leg is not None and leg.mint != WSOL_MINT
    ]
    if not legs:
        return activities
    uses: dict[tuple[str, str], int] = {}
    for key in legs:
        uses[key] = uses.get(key, 0) + 1
    return [_settled(item, uses) if item.kind is swap else item for item in activities]


def _settled(item: Activity, uses: dict[tuple[str, str], int]) -> Activity:
    """A swap with each non-SOL leg that only it moves set to the trader's net change of that mint."""
    deltas = item.trader_deltas
    trader = item.trader
    given, got = item.input, item.output
    if given is not None and uses.get((trader, given.mint)) == 1 and 0 < -deltas.get(given.mint, 0) != given.amount:
        given = TokenAmount(given.mint, -deltas[given.mint], given.decimals)
    if got is not None and uses.get((trader, got.mint)) == 1 and 0 < deltas.get(got.mint, 0) != got.amount:
        got = TokenAmount(got.mint, deltas[got.mint], got.decimals)
    if given is item.input and got is item.output:
        return item
    return Activity(
        item.signature,
        item.slot,
        item.block_time,
        item.kind,
        item.index,
        item.trader,
        item.venue,
        given,
        got,
        item.hops,
        item.trader_deltas,
    )


def _amount_json(amount: TokenAmount | None) -> dict[str, Any] | None:
    if amount is None:
        return None
    return {"mint": amount.mint, "amount": str(amount.amount), "decimals": amount.decimals}


def _hop_json(hop: Hop) -> dict[str, Any]:
    out: dict[str, Any] = {
        "program": hop.program,
        "program_id": hop.program_id,
        "pool": hop.pool,
        "input": _amount_json(hop.input),
        "output": _amount_json(hop.output),
    }
    if hop.price_impact_pct is not None:
        out["price_impact_pct"] = hop.price_impact_pct
    if hop.reserves is not None:
        out["reserves"] = [_amount_json(hop.reserves[0]), _amount_json(hop.reserves[1])]
    return out


def activity_to_json(a: Activity) -> dict[str, Any]:
    """The JSON shape of an activity: raw amounts as decimal strings, the natural key as `index`.

    Returns:
        `{"signature", "slot", "block_time", "kind", "index": {"outer", "inner"}, "trader", "venue",
        "input", "output", "hops", "trader_deltas"}`, amounts as `{"mint", "amount", "decimals"}`; a hop
        has `price_impact_pct` and `reserves` (input side, output side) where known.
    """
    return {
        "signature": a.signature,
        "slot": a.slot,
        "block_time": a.block_time,
        "kind": a.kind.value,
        "index": {"outer": a.index.outer, "inner": a.index.inner},
        "trader": a.trader,
        "venue": a.venue,
        "input": _amount_json(a.input),
        "output": _amount_json(a.output),
        "hops": [_hop_json(h) for h in a.hops],
        "trader_deltas": {mint: str(delta) for mint, delta in a.trader_deltas.items()},
    }


def _expand(paths: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES))
        else:
            files.append(path)
    return files


def decode_files(paths: Sequence[Path], out: TextIO, err: TextIO) -> int:
    """Decode files (or directories of `.json`/`.jsonl` files), writing one JSON line per activity.

    Each unreadable file, and each transaction whose decoding failed, gets one error line on `err`
    naming the file and what is wrong (for a decoding failure: the signature, the program, the
    instruction and the exception); everything else is still decoded.

    Returns:
        The process exit status: 0 when every file was read and every transaction decoded, 1 otherwise.
    """
    status = 0
    for path in _expand(paths):
        try:
            raw = path.read_bytes()
        except OSError as exc:
            err.write(f"error: {path}: cannot read: {exc.strerror or exc}\n")
            status = 1
            continue
        try:
            transactions = parse_transactions(raw)
        except TransactionFormatError as exc:
            err.write(f"error: {path}: {exc}\n")
            status = 1
            continue
        for tx in transactions:
            try:
                activities = decode_transaction(tx)
            except DecodeError as exc:
                err.write(f"error: {path}: {exc}\n")
                status = 1
                continue
            for item in activities:
                out.write(orjson.dumps(activity_to_json(item)).decode())
                out.write("\n")
    return status
