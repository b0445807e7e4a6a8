"""What the live sources share: program groups, partition ownership from logs, the seen-set, resume checks."""

from __future__ import annotations

import pickle

import pytest

from quantbot.live import (
    ChainPoint,
    LivePosition,
    SeenSignatures,
    group_key,
    invoked_programs,
    owning_group,
    program_groups,
)

JUP = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
RAY = "675kPX9MHTjS2zt1qfr1NYHuzeLXfQM9H24wFSUt1Mp8"
PUMP = "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P"
ORCA = "whirLbMiicVdio4qvUfM5KAg6Ct8VwpYzGff3uctyCc"


def test_groups_are_the_configured_ones_then_the_rest() -> None:
    """Configured groups keep their order; programs no group names share one last partition."""
    assert program_groups([JUP, RAY, PUMP, ORCA], [[PUMP], [RAY, JUP]]) == [(PUMP,), (RAY, JUP), (ORCA,)]
    assert program_groups([JUP, RAY], []) == [(JUP, RAY)]


def test_a_group_of_a_program_not_followed_is_refused() -> None:
    """A group naming a program outside `programs` is a configuration mistake, named."""
    with pytest.raises(ValueError, match=ORCA):
        program_groups([JUP], [[ORCA]])


def test_partition_keys_name_the_source_and_group() -> None:
    """A partition's key is stable for a group: its snapshots are found again after a restart."""
    assert group_key("websocket", (JUP, RAY, PUMP)) == f"websocket:{JUP}+2"
    assert group_key("grpc", (PUMP,)) == f"grpc:{PUMP}"


def test_invoked_programs_are_read_from_invoke_lines() -> None:
    """Only `Program <id> invoke [n]` lines name invoked programs; success and log lines do not."""
    logs = [
        f"Program {JUP} invoke [1]",
        "Program log: Instruction: Route",
        f"Program {RAY} invoke [2]",
        f"Program {RAY} success",
        f"Program {PUMP} consumed 100 of 200 compute units",
    ]
    assert invoked_programs(logs) == {JUP, RAY}


def test_the_first_group_invoked_owns_a_transaction() -> None:
    """A route through two groups' programs is fetched by the first group only; no invoke line: nobody owns."""
    groups = [(PUMP,), (RAY, ORCA), (JUP,)]
    route = [f"Program {JUP} invoke [1]", f"Program {RAY} invoke [2]"]
    assert owning_group(route, groups) == 1
    assert owning_group([f"Program {PUMP} invoke [1]"], groups) == 0
    assert owning_group(["Log truncated"], groups) is None


def test_the_seen_set_takes_each_signature_once_and_forgets_the_oldest() -> None:
    """A signature is new once; past the limit the oldest is forgotten first; the snapshot keeps the order."""
    seen = SeenSignatures(3)
    assert [seen.add(s) for s in ("a", "b", "a", "c", "d")] == [True, True, False, True, True]
    assert "a" not in seen and "d" in seen
    assert seen.snapshot() == ("b", "c", "d")
    again = SeenSignatures(3, seen.snapshot())
    assert not again.add("c") and again.add("a")
    assert pickle.loads(pickle.dumps(again)).snapshot() == ("c", "d", "a")  # noqa: S301 - our own bytes


def test_a_seen_set_remembers_at_least_one() -> None:
    """A limit below one is refused, naming it."""
    with pytest.raises(ValueError, match="at least one"):
        SeenSignatures(0)


def test_a_position_resumes_only_its_own_source_and_programs() -> None:
    """A snapshot of other programs, or of the other source, is refused with the reason."""
    position = LivePosition("websocket", (JUP, RAY), {JUP: ChainPoint(5, "sig")})
    assert position.refusal("websocket", (JUP, RAY)) is None
    assert "not of grpc" in (position.refusal("grpc", (JUP, RAY)) or "")
    assert "program_groups changed" in (position.refusal("websocket", (JUP,)) or "")
