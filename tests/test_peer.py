"""The simulated chain (`quantbot.ops.peers.chain`) and the Solana JSON-RPC + websocket peer built on it."""

from __future__ import annotations

import itertools

import pytest

from quantbot.ops.peers import ENCODINGS, ChainSpec, SimulatedChain, load_recorded
from quantbot.solana.decode import decode_transaction
from quantbot.solana.normalise import parse_transactions
from tests.conftest import CORPUS_DIR

START = 1_750_000_000
"""A fixed chain start (Unix seconds), so chains are reproducible."""
JUPITER = "JUP6LkbZbjS1jKKwapdHNy74zcZ3tLUZoi5QNyVTaV4"
PUMPFUN = "6EF8rrecthR5Dkzon8Nwu78hRvfCKubJ14M5uBEwF6P"


def _chain(txs: int = 300, seed: int = 5, **overrides: object) -> SimulatedChain:
    return SimulatedChain(ChainSpec(txs=txs, seed=seed, start_time=START, **overrides))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def chain() -> SimulatedChain:
    return _chain(600, skipped_slot_share=0.2)


def test_same_spec_gives_the_same_chain_and_another_seed_does_not() -> None:
    """A chain is a function of its spec: signatures, slots and rendered bytes repeat; the seed changes them."""
    first, second, other = _chain(50), _chain(50), _chain(50, seed=6)

    assert [(t.signature, t.slot, t.index) for t in first] == [(t.signature, t.slot, t.index) for t in second]
    assert first.transactions[7].result("json") == second.transactions[7].result("json")
    assert {t.signature for t in first}.isdisjoint(t.signature for t in other)


def test_transactions_sit_in_produced_slots_in_block_order(chain: SimulatedChain) -> None:
    """Slots ascend, skipped slots hold nothing, indexes count up in each block, and due times never go back."""
    txs = chain.transactions
    skipped = [slot for slot in range(chain.first_slot, chain.last_slot) if chain.is_skipped(slot)]

    assert skipped and set(skipped).isdisjoint(chain.slots)
    assert set(chain.slots) == set(range(chain.first_slot, chain.last_slot + 1)) - set(skipped)
    assert all(not chain.is_skipped(t.slot) for t in txs)
    for before, after in itertools.pairwise(txs):
        assert (before.slot, before.index) < (after.slot, after.index) and before.due_s <= after.due_s
        assert after.index == (before.index + 1 if before.slot == after.slot else 0)
    for slot in chain.slots:
        block = chain.block(slot)
        assert block is not None and list(block.signatures) == [t.signature for t in txs if t.slot == slot]
        assert block.start_s <= min((chain.by_signature(s).due_s for s in block.signatures), default=block.start_s)  # type: ignore[union-attr]
    assert chain.block(skipped[0]) is None and chain.block_signatures(skipped[0]) == ()


def test_blocks_chain_to_their_parents_across_skips(chain: SimulatedChain) -> None:
    """Each block's parent is the previous produced slot, with that block's hash; heights count blocks only."""
    blocks = list(chain.blocks())

    for parent, child in itertools.pairwise(blocks):
        assert child.parent_slot == parent.slot and child.previous_blockhash == parent.blockhash
        assert child.block_height == parent.block_height + 1 and child.block_time >= parent.block_time


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_results_parse_to_the_transaction_and_decode_to_the_generated_trade(
    chain: SimulatedChain, encoding: str
) -> None:
    """Every encoding of a generated transaction parses to its signature and slot and decodes to its trade."""
    for tx in chain.transactions[:60]:
        expected = tx.expected
        assert expected is not None

        (parsed,) = parse_transactions(tx.result(encoding))
        activities = decode_transaction(parsed)

        assert (parsed.signature, parsed.slot, parsed.block_time) == (tx.signature, tx.slot, tx.block_time)
        assert parsed.err == tx.err and set(parsed.account_keys) == tx.mentions and parsed.logs == list(tx.logs)
        if expected.kind == "failed":
            assert activities == []
        else:
            assert [(a.trader, a.venue, a.input, a.output) for a in activities] == [
                (expected.trader, expected.venue, expected.input, expected.output)
            ]


def test_an_unknown_encoding_is_refused(chain: SimulatedChain) -> None:
    """`result` names the encoding it does not know."""
    with pytest.raises(ValueError, match="unknown encoding `binary64`"):
        chain.transactions[0].result("binary64")


def test_recorded_transactions_are_spread_and_retimed_but_kept_as_recorded() -> None:
    """Corpus results land evenly on the timeline, with their slot and block time rewritten to their place."""
    extra = load_recorded(CORPUS_DIR)
    chain = SimulatedChain(ChainSpec(txs=200, seed=2, start_time=START, extra=extra))

    recorded = [t for t in chain if t.recorded]
    positions = [i for i, t in enumerate(chain.transactions) if t.recorded]

    assert len(recorded) == len(extra) >= 30
    assert positions[0] < len(chain) / len(extra) and positions[-1] > len(chain) * (1 - 1 / len(extra))
    for tx in recorded:
        (parsed,) = parse_transactions(tx.result("jsonParsed"))
        assert (parsed.signature, parsed.slot, parsed.block_time) == (tx.signature, tx.slot, tx.block_time)
        assert tx.expected is None and tx.mentions == frozenset(parsed.account_keys)
    assert {t.version for t in recorded} >= {0, "legacy"}


def test_signatures_for_address_pages_newest_first_like_the_rpc(chain: SimulatedChain) -> None:
    """before/until are exclusive, paging with before walks the whole history, unknown before is empty."""
    oracle = [t.signature for t in reversed(chain.transactions) if JUPITER in t.mentions]
    assert len(oracle) > 50

    pages: list[str] = []
    before: str | None = None
    while page := chain.signatures_for_address(JUPITER, before=before, limit=17):
        pages += [t.signature for t in page]
        before = page[-1].signature

    assert pages == oracle
    assert [t.signature for t in chain.signatures_for_address(JUPITER, until=oracle[10])] == oracle[:10]
    between = chain.signatures_for_address(JUPITER, before=oracle[3], until=oracle[9])
    assert [t.signature for t in between] == oracle[4:9]
    assert chain.signatures_for_address(JUPITER, before="1" * 88) == []
    assert [t.signature for t in chain.signatures_for_address(JUPITER, until="1" * 88, limit=5)] == oracle[:5]


def test_signatures_for_address_sees_only_what_appeared(chain: SimulatedChain) -> None:
    """At a moment of the chain, only transactions due by then are listed, and a later before is unknown."""
    middle = chain.transactions[len(chain) // 2]
    now = middle.due_s
    visible = [t.signature for t in reversed(chain.transactions) if JUPITER in t.mentions and t.due_s <= now]
    later = next(t for t in chain.transactions if t.due_s > now and JUPITER in t.mentions)

    assert [t.signature for t in chain.signatures_for_address(JUPITER, visible_until_s=now)] == visible
    assert chain.signatures_for_address(JUPITER, before=later.signature, visible_until_s=now) == []


def test_dex_signatures_are_the_transactions_naming_the_programs(chain: SimulatedChain) -> None:
    """The oracle of emitted DEX transactions is exactly those whose keys name a program asked for."""
    wanted = chain.dex_signatures([JUPITER, PUMPFUN])

    assert wanted == {t.signature for t in chain if JUPITER in t.mentions or PUMPFUN in t.mentions}
    assert 0 < len(wanted) < len(chain)
    assert chain.dex_signatures([JUPITER], visible_until_s=-1.0) == frozenset()


@pytest.mark.parametrize(
    "overrides", [{"txs": -1}, {"txs": 0}, {"tx_per_s": 0.0}, {"skipped_slot_share": 1.0}, {"failed_share": -0.1}]
)
def test_impossible_chain_specs_are_refused(overrides: dict[str, object]) -> None:
    """A spec that cannot make a chain fails at construction, naming the field."""
    with pytest.raises(ValueError, match=next(iter(overrides)) if overrides != {"txs": 0} else "at least one"):
        ChainSpec(**{"txs": 10, **overrides})  # type: ignore[arg-type]
