"""What the live sources share that is not I/O: which programs a partition follows, which signatures it has
seen, where a subscription stands, and the gaps between two connections.

Pure data and functions (no network, no Bytewax): the sources in `connectors/` hold these objects in their
partitions and put them in their snapshots.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

INVOKE_PREFIX = "Program "
INVOKE_MARK = " invoke ["
"""A log line `Program <id> invoke [<depth>]` names a program the transaction ran."""


def program_groups(programs: Sequence[str], groups: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """The partitions' programs: the configured groups, then one group of the programs no group names.

    Args:
        programs: every program to follow, in order.
        groups: programs per partition, as configured; empty: one partition for all.

    Raises:
        ValueError: a group names a program that is not followed.
    """
    followed = set(programs)
    grouped: list[tuple[str, ...]] = []
    named: set[str] = set()
    for group in groups:
        stray = [p for p in group if p not in followed]
        if stray:
            raise ValueError(f"program group names `{stray[0]}`, which is not among the programs followed")
        grouped.append(tuple(group))
        named.update(group)
    rest = tuple(p for p in programs if p not in named)
    if rest:
        grouped.append(rest)
    return grouped


def group_key(source: str, group: Sequence[str]) -> str:
    """A partition's key: the source and its group's first program (stable while the group's head is)."""
    return f"{source}:{group[0]}" + (f"+{len(group) - 1}" if len(group) > 1 else "")


def invoked_programs(logs: Iterable[str]) -> set[str]:
    """The programs a transaction's log lines show invoked (`Program <id> invoke [n]`)."""
    invoked: set[str] = set()
    for line in logs:
        if line.startswith(INVOKE_PREFIX) and INVOKE_MARK in line:
            invoked.add(line[len(INVOKE_PREFIX) : line.index(INVOKE_MARK)])
    return invoked


def owning_group(logs: Iterable[str], groups: Sequence[Sequence[str]]) -> int | None:
    """Which partition fetches a notified transaction: the first group (in configured order) one of whose
    programs its logs show invoked; None when the logs show none (truncated logs: whoever was notified).

    A Jupiter route through Raydium notifies both programs' subscriptions; when they are in two partitions,
    only the first fetches it, so that the flow sees it once.
    """
    invoked = invoked_programs(logs)
    for number, group in enumerate(groups):
        if invoked.intersection(group):
            return number
    return None


class SeenSignatures:
    """The signatures a partition has taken on (to fetch, or fetched), the oldest forgotten first.

    What makes a signature notified twice (two subscriptions, a reconnection's overlap, a gap's backfill)
    fetched and emitted once. Picklable; its snapshot is the signatures in the order they were seen.

    Args:
        limit: signatures remembered at most.
        seen: signatures already seen, oldest first (a snapshot's).
    """

    def __init__(self, limit: int, seen: Iterable[str] = ()) -> None:
        if limit < 1:
            raise ValueError(f"a seen-set must remember at least one signature, got {limit}")
        self.limit = limit
        self._order: OrderedDict[str, None] = OrderedDict()
        for signature in seen:
            self.add(signature)

    def add(self, signature: str) -> bool:
        """Remember `signature`; True when it was not remembered yet."""
        if signature in self._order:
            return False
        self._order[signature] = None
        if len(self._order) > self.limit:
            self._order.popitem(last=False)
        return True

    def __contains__(self, signature: object) -> bool:
        return signature in self._order

    def __len__(self) -> int:
        return len(self._order)

    def snapshot(self) -> tuple[str, ...]:
        """The signatures remembered, oldest first."""
        return tuple(self._order)


@dataclass(frozen=True, slots=True)
class ChainPoint:
    """A place on the chain: a slot and one signature in it (the last a subscription saw)."""

    slot: int
    signature: str


@dataclass(frozen=True, slots=True)
class Gap:
    """The stretch a live source may have missed between two connections (or across a restart).

    Attributes:
        program: the subscription's program.
        before: the last transaction seen before the gap, None when the program had none yet.
        after: the first one seen after it, None until one arrives.
        reason: what opened it: `disconnect`, `stale`, `restart`.
    """

    program: str
    before: ChainPoint | None
    after: ChainPoint | None
    reason: str


@dataclass(frozen=True, slots=True)
class LivePosition:
    """Where a live partition resumes, and what it resumes.

    Attributes:
        source: `websocket` or `grpc`.
        programs: the partition's program group; a resume of another group is refused.
        last: per program, the newest transaction notified.
        pending: signatures taken on but not emitted yet: fetched again on resume.
        seen: the seen-set, oldest first.
        slot: the newest slot seen fully (gRPC: where `from_slot` resumes); None before any.
        tokens: mints whose accounts were asked for (`request_token`) but not emitted yet: asked again on
            resume. A snapshot taken before the field existed lacks it: read it with `pending_tokens`.
    """

    source: str
    programs: tuple[str, ...]
    last: dict[str, ChainPoint] = field(default_factory=dict)
    pending: tuple[str, ...] = ()
    seen: tuple[str, ...] = ()
    slot: int | None = None
    tokens: tuple[str, ...] = ()

    @property
    def pending_tokens(self) -> tuple[str, ...]:
        """`tokens`, or nothing for a snapshot pickled before the field existed (its slot is then unset)."""
        return getattr(self, "tokens", ())

    def refusal(self, source: str, programs: Sequence[str]) -> str | None:
        """Why this position cannot resume `source` over `programs`, or None when it can."""
        if self.source != source:
            return f"the snapshot is of the {self.source} source, not of {source}"
        if tuple(programs) != self.programs:
            return (
                f"the snapshot follows programs {', '.join(self.programs)}, not {', '.join(programs)}:"
                " the [solana] programs or program_groups changed"
            )
        return None
