"""The decoder on the recorded mainnet corpus: every transaction, every fact of its index entry, exactly.

`index.json` was computed independently of this code (the signer's balance changes and the protocol
events of each transaction); these tests reproduce all of it, then pin what each transaction decodes to.
"""

from __future__ import annotations

from typing import Any

import pytest

from quantbot.models import WSOL_MINT, Activity, ActivityKind
from quantbot.solana.decode import REGISTRY, activity_to_json, decode_transaction
from quantbot.solana.events import Event, collect_events
from tests.solana.conftest import corpus_files, file_of, index, load

WSOL = WSOL_MINT
INDEX_IDS = [entry["signature"][:12] for entry in index()]

# PumpSwap's index entries name the buy/sell fields generically; the IDL names them by direction.
_PUMPSWAP_FIELDS = {
    "BuyEvent": {
        "base_amount": "base_amount_out",
        "quote_limit": "max_quote_amount_in",
        "quote_amount": "quote_amount_in",
    },
    "SellEvent": {
        "base_amount": "base_amount_in",
        "quote_limit": "min_quote_amount_out",
        "quote_amount": "quote_amount_out",
    },
}


def _parse_type(kind: str) -> tuple[str, str | None, str | None, str | None]:
    """Index event type -> (program, event name or None, source or None, discriminator hex or None)."""
    program, rest = kind.split(".", 1)
    if program.startswith("DF1ow"):
        program = "dflow"
    source = None
    if rest.endswith("(log)"):
        rest, source = rest[: -len("(log)")], "log"
    elif rest.endswith("(cpi)"):
        rest, source = rest[: -len("(cpi)")], "cpi"
    if rest.startswith(("cpi_event:", "log_event:")):
        label, disc = rest.split(":", 1)
        return program, None, "cpi" if label == "cpi_event" else "log", disc
    if rest.startswith("ray_log."):
        return program, rest[len("ray_log.") :], "log", None
    return program, rest, source, None


def _matches(event: Event, fields: dict[str, Any]) -> bool:
    names = _PUMPSWAP_FIELDS.get(event.name, {}) if event.program == "pumpswap" else {}
    for name, value in fields.items():
        if name == "side":
            if (value == "buy") != (event.name == "BuyEvent"):
                return False
        elif event.fields.get(names.get(name, name)) != value:
            return False
    return True


@pytest.mark.parametrize(
    "path", corpus_files(), ids=lambda p: p.name[:12] + (".geyser" if ".geyser." in p.name else "")
)
def test_every_transaction_decodes_without_internal_errors(path: Any) -> None:
    """Every recorded transaction normalises and decodes with no decoder raising (no `DecodeError`)."""
    # Arrange
    tx = load(path.name)

    # Act
    activities = decode_transaction(tx)

    # Assert
    assert tx.signature == path.name.split(".")[0]
    assert tx.failed or activities


@pytest.mark.parametrize("entry", index(), ids=INDEX_IDS)
def test_index_events_are_reproduced_exactly(entry: dict[str, Any]) -> None:
    """Each protocol event the index lists is found, by program, name or discriminator, with equal fields."""
    for name in entry["files"]:
        # Arrange
        tx = load(name)

        # Act
        events = collect_events(tx, REGISTRY, dedupe=False)

        # Assert
        unused = list(events)
        for expected in entry["derived_events"]:
            program, event_name, source, disc = _parse_type(expected["type"])
            # An unsuffixed type names the CPI copy where both copies exist: try CPI copies first.
            candidates = sorted(unused, key=lambda e: e.source != "cpi")
            found = next(
                (
                    e
                    for e in candidates
                    if e.program == program
                    and (event_name is None or e.name == event_name)
                    and (source is None or e.source == source)
                    and (disc is None or e.discriminator.hex() == disc)
                    and _matches(e, expected["fields"])
                ),
                None,
            )
            assert found is not None, f"{name}: {expected['type']} not reproduced"
            unused.remove(found)


@pytest.mark.parametrize("entry", [e for e in index() if e["err"] is None], ids=lambda e: e["signature"][:12])
def test_trader_deltas_equal_the_index_signer_deltas(entry: dict[str, Any]) -> None:
    """The signer's activities carry its exact net changes: tokens as listed, SOL folded into wSOL."""
    expected = dict(entry["signer_token_deltas_raw"])
    expected[WSOL] = expected.get(WSOL, 0) + entry["signer_sol_delta_lamports_excl_fee"]
    expected = {mint: delta for mint, delta in expected.items() if delta}
    for name in entry["files"]:
        # Arrange
        tx = load(name)

        # Act
        activities = [a for a in decode_transaction(tx) if a.trader == entry["signer"]]

        # Assert
        assert activities, f"{name}: no activity for the signer"
        for item in activities:
            assert item.trader_deltas == expected


@pytest.mark.parametrize("entry", [e for e in index() if e["err"] is not None], ids=lambda e: e["signature"][:12])
def test_failed_transactions_yield_no_activity(entry: dict[str, Any]) -> None:
    """A transaction with `meta.err` yields nothing, though its logs and events look like a trade."""
    # Arrange
    (name,) = entry["files"]
    tx = load(name)

    # Act
    activities = decode_transaction(tx)

    # Assert
    assert tx.failed
    assert activities == []


def test_geyser_twin_decodes_like_its_rpc_twin() -> None:
    """The Geyser-shaped recording of a transaction decodes to the RPC recording's activities.

    Geyser updates carry no block time, so `block_time` is the one field allowed to differ.
    """
    # Arrange
    twins = [p.name for p in corpus_files() if ".geyser." in p.name]
    assert twins

    for geyser_name in twins:
        rpc_name = geyser_name.replace(".geyser.json", ".json")

        # Act
        geyser_tx, rpc_tx = load(geyser_name), load(rpc_name)
        from_geyser = [activity_to_json(a) for a in decode_transaction(geyser_tx)]
        from_rpc = [activity_to_json(a) for a in decode_transaction(rpc_tx)]

        # Assert
        assert geyser_tx.account_keys == rpc_tx.account_keys
        assert [ix.program_id for ix in geyser_tx.instructions] == [ix.program_id for ix in rpc_tx.instructions]
        assert from_geyser
        for item in from_geyser + from_rpc:
            item.pop("block_time")
        assert from_geyser == from_rpc


@pytest.mark.parametrize(
    "entry",
    [e for e in index() if e["err"] is None and any(d["type"] == "jupiter_v6.SwapEvent" for d in e["derived_events"])],
    ids=lambda e: e["signature"][:12],
)
def test_jupiter_route_is_one_trade_with_a_hop_per_swap_event(entry: dict[str, Any]) -> None:
    """A Jupiter route is one swap whose hops are its SwapEvents in order: amm, mints and amounts."""
    # Arrange
    (name,) = entry["files"]
    swap_events = [d["fields"] for d in entry["derived_events"] if d["type"] == "jupiter_v6.SwapEvent"]

    # Act
    routes = [a for a in decode_transaction(load(name)) if a.venue == "jupiter_v6"]

    # Assert
    assert len(routes) == 1
    (route,) = routes
    assert route.kind == ActivityKind.SWAP
    assert [(h.program_id, h.input.mint, h.input.amount, h.output.mint, h.output.amount) for h in route.hops] == [
        (e["amm"], e["input_mint"], e["input_amount"], e["output_mint"], e["output_amount"]) for e in swap_events
    ]
    assert route.input is not None and route.output is not None
    assert route.input.mint == swap_events[0]["input_mint"]
    assert route.output == route.hops[-1].output


def _summary(item: Activity) -> tuple[Any, ...]:
    def leg(amount: Any) -> tuple[str, int] | None:
        return (amount.mint, amount.amount) if amount is not None else None

    hops = tuple((h.program, h.pool, h.input.amount, h.output.amount) for h in item.hops)
    return (item.kind.value, item.venue, (item.index.outer, item.index.inner), leg(item.input), leg(item.output), hops)


EXPECTED: dict[str, list[tuple[Any, ...]]] = {
    "1ZSq1Aa2i6ES": [
        (
            "swap",
            "jupiter_v6",
            (5, 4),
            (WSOL, 10000),
            ("EwJN2GqUGXXzYmoAciwuABtorHczTA5LqbukKXV1viH7", 12839349),
            (
                ("raydium_amm_v4", "HwmXcC95GQVFUVUNgR23KAozvKJLYTAf8UAYDQyG8fKU", 10000, 301729867),
                ("orca_whirlpool", "FSbZMk5hVaYyWZs8dj1rVZR3YRQVKaMvXmtfUmbjWvKD", 301729867, 1607),
                ("orca_whirlpool", "uvkZDCb1mRyffGUfpyTMWegF2mekNtgfNGKReTegUME", 1607, 12839349),
            ),
        )
    ],
    "27f6P1sV4sDJ": [
        (
            "swap",
            "dflow",
            (3, 11),
            ("5w68xqRpVFqi7hCXuN7QLc5ReLv1PfpmT9TVm11Cpump", 134152655735),
            ("6AJcP7wuLwmRYLBNbi825wgguaPsWzPBEHcHndpRpump", 154838482),
            (
                ("pumpswap", "EGTHgmHac1ZLgwVQjzXyGAyN8SKjgMbA6vsrFe6pB5dz", 134018503080, 112472203),
                ("meteora_dlmm", "EVZWT6SkCyPXG6yn2JTzYTCbfL9paXJZh4ZLvxpqAiSS", 112472203, 154838482),
            ),
        )
    ],
    "28rWme56aMya": [
        (
            "swap",
            "jupiter_v6",
            (3, 3),
            ("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 1000000),
            (WSOL, 5903984),
            (("obric_v2", None, 991250, 5903984),),
        )
    ],
    "2E9Ddokz6HZk": [("transfer", "system", (0, None), (WSOL, 42000000), None, ())],
    "2F7KM7K1cZBm": [
        (
            "swap",
            "pumpswap",
            (4, 4),
            (WSOL, 1483954199),
            ("npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", 5789780068),
            (("pumpswap", "Ef7wUrbarRXHNMMgBs8cstSkzRttnstjMsniaq7zMp6j", 1483954199, 5789780068),),
        )
    ],
    "2LZBWdD5N9xb": [("liquidity_add", "meteora_dlmm", (5, 2), (WSOL, 2499999995), None, ())],
    "2ZiXFzYVAaxB": [
        (
            "swap",
            "jupiter_v6",
            (5, 5),
            (WSOL, 100000),
            ("A3eME5CetyZPBoWbRUwY3tSe25S6tb18ba9ZPbWk9eFJ", 39649),
            (
                ("lifinity_v2", "5KA7eEtZKSyGHyFwrNQZfFASDXtyPCtYCu5jwMBsQcSQ", 100000, 5992),
                ("meteora_dlmm", "7AL9m3VLGdbEiXprxTzR8mpsWY8aY8LgnxmAMXdojA5r", 5992, 14509),
                ("orca_whirlpool", "BmfXKN6hiBv2WcNHrwD8YiCJFRHBJq7NpGdGKDo9Fzwx", 14509, 39649),
            ),
        )
    ],
    "2cd7QQSByKy6": [
        (
            "swap",
            "raydium_clmm",
            (4, None),
            (WSOL, 300000000),
            ("7eR1yv7pUzhaqQneKJ2fmVTRuzY61ja5KwfbBrLsq1Gu", 807769528641),
            (("raydium_clmm", "EM4Fvu4G3qLuSNdBeturuHzqh871hh1evxY7RLBoF6ZL", 300000000, 807769528641),),
        )
    ],
    "2ffHb9AXeKNV": [
        (
            "pool_create",
            "pumpswap",
            (0, 34),
            ("npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", 206900000000001),
            ("B88Rh9j2qfakyhY8ZxkfejFRp1B56BMyHcAQ6D61rERS", 4193388291484),
            (),
        ),
        (
            "swap",
            "pumpswap",
            (3, 9),
            (WSOL, 30014901934),
            ("npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", 53878801723012),
            (("pumpswap", "Ef7wUrbarRXHNMMgBs8cstSkzRttnstjMsniaq7zMp6j", 30014901934, 53878801723012),),
        ),
    ],
    "2ghHZXwyU6K1": [
        (
            "swap",
            "pumpfun",
            (2, 4),
            (WSOL, 131112615),
            ("7k2255ueF3Ecnnjf9odEu7so3gmXKS8E29atDWmFpump", 2878556000000),
            (("pumpfun", "9A5TEByiBsj1RXZfe6cDr3tLn89vXtrZ11QsFWf13Njm", 129814469, 2878556000000),),
        )
    ],
    "2pfnv4drhnit": [
        (
            "swap",
            "jupiter_v6",
            (4, 4),
            ("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 10000),
            ("HaMv3cdfDW6357yjpDur6kb6w52BUPJrMJpR76tjpump", 2583728601),
            (
                ("meteora_dlmm", "3msVd34R5KxonDzyNSV5nT19UtUeJ2RF1NaQhvVPNLxL", 10000, 73111),
                ("pumpfun", "HUCjBnmd4FoUjCCMYQ9xFz1ce1r8vWAd8uMhUQakE2FR", 73111, 2583728601),
            ),
        )
    ],
    "33LHUzKfhBvU": [
        (
            "swap",
            "pumpfun",
            (2, 3),
            (WSOL, 24080282),
            ("HfJVjBdkhAD2ynVM8PdTSii4ECZdsxNTCx5wpEqUpump", 605426095720),
            (("pumpfun", "6fogeBTRjgm9Kb9dVtqpjDf6bGvjGgdScmTu5nCVPJPn", 24080282, 605426095720),),
        ),
        (
            "swap",
            "pumpfun",
            (3, 1),
            ("HfJVjBdkhAD2ynVM8PdTSii4ECZdsxNTCx5wpEqUpump", 605426095720),
            (WSOL, 24080281),
            (("pumpfun", "6fogeBTRjgm9Kb9dVtqpjDf6bGvjGgdScmTu5nCVPJPn", 605426095720, 24080281),),
        ),
    ],
    "3QvhUBMprN6M": [
        (
            "swap",
            "pumpswap",
            (2, 4),
            ("GhhhWpvhigZBt17qrehiwtoJNfkBuV9TaqaouWugpump", 1815370392047),
            (WSOL, 2067040713),
            (("pumpswap", "3M7hSrWDyLMhLCVrBhZUPqhcbXigrYdb7ygENvCaB2yt", 1815370392047, 2067040713),),
        )
    ],
    "3USu3YAsg2qB": [
        (
            "swap",
            "raydium_launchpad",
            (6, 0),
            (WSOL, 654952192),
            ("4HhNdqkmMsMV9Z3d85sPYDw1MR3DpXRrxknRTLYXN22h", 16967820845269),
            (("raydium_launchpad", "D5y6T2Ep483fEup9mRC3LJSK7cd4Larxz46aE6YoGQsG", 654952192, 16967820845269),),
        )
    ],
    "3Zj5XkvE1Uec": [
        ("transfer", "spl_token", (0, None), ("4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU", 10000), None, ())
    ],
    "3bYXWjjNkVZp": [
        (
            "swap",
            "pumpfun",
            (3, 1),
            ("CnNVDyM7GXBBcH8giuRYm17YCn6kpFTTbnd6Tx4hpump", 592443959000000),
            (WSOL, 37437283903),
            (("pumpfun", "6cSXbsWdUE86Nvwq8UZSQS8X8v4Rz3TP39V6gSb9Rg6f", 592443959000000, 37437283903),),
        )
    ],
    "3oweJMyjtMAm": [
        (
            "swap",
            "jupiter_v6",
            (2, 4),
            ("A3eME5CetyZPBoWbRUwY3tSe25S6tb18ba9ZPbWk9eFJ", 1000000),
            ("AujTJJ7aMS8LDo3bFzoyXDwT3jBALUbu4VZhzZdTZLmG", 1706275010),
            (
                ("raydium_amm_v4", "AxBDdiMK9hRPLMPM7k6nCPC1gRARgXQHNejfP2LvNGr6", 1000000, 2483471),
                ("raydium_amm_v4", "Cne2WysEXzSLWbdABTG3vYkRNyJyMJ1zLhn26QPrBRZg", 2483471, 1706275010),
            ),
        )
    ],
    "3rTFfi824Qnh": [
        (
            "swap",
            "raydium_amm_v4",
            (4, None),
            (WSOL, 2000000000),
            ("HhUVkZ1qz8vfMqZDemLyxBFxrHFKVSYAk7a6227Lpump", 92529930455),
            (("raydium_amm_v4", "6nnTjw6C37vDMsExuSX8y7wJrbybFb5SLXBzaDqfhaUd", 2000000000, 92529930455),),
        )
    ],
    "3tJczs8y2bR8": [
        (
            "swap",
            "pumpfun",
            (3, 1),
            ("FstBRGMkNKf4wNvfieYUPS9YsbNoQJMCh6v89zajpump", 94443000000),
            (WSOL, 3556271),
            (("pumpfun", "BtMzrjEpmLTk4ZGdaS9VVp1jfneoyc1AWsU8ko7ffnug", 94443000000, 3556271),),
        )
    ],
    "3urgYCgDeqUE": [
        (
            "swap",
            "pumpswap",
            (4, 4),
            (WSOL, 672518120),
            ("npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", 2628184727),
            (("pumpswap", "Ef7wUrbarRXHNMMgBs8cstSkzRttnstjMsniaq7zMp6j", 672518120, 2628184727),),
        )
    ],
    "43VK3TtYjN21": [],
    "469XLAdr6x5i": [
        (
            "swap",
            "jupiter_v6",
            (5, 5),
            (WSOL, 100000),
            ("JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN", 16248),
            (
                ("lifinity_v2", "AA3dbng9wdvLxwktdsfk5SsNE6SdJk1wNBEYho6xS1Cy", 100000, 416785),
                ("meteora_dlmm", "5gfyVLqdBcGzKn3pK4Jnv4qxXf1hRkCf7JyNnYNzoKRZ", 416785, 10905411),
                ("meteora_dlmm", "6R45pRroqWLysB433uLmXWBnq1p44TzGp1zJ6Re7erVs", 10905411, 16248),
            ),
        )
    ],
    "4DHUWn3ZYxih": [
        (
            "swap",
            "pumpswap",
            (4, 4),
            (WSOL, 582148697),
            ("npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", 2264684754),
            (("pumpswap", "Ef7wUrbarRXHNMMgBs8cstSkzRttnstjMsniaq7zMp6j", 582148697, 2264684754),),
        )
    ],
    "4G24SgaZ3gU9": [
        ("transfer", "spl_token_2022", (2, None), ("HeLp6NuQkmYB4pYWo2zYs22mESHXPQYzXbB8n4V98jwC", 10000000), None, ())
    ],
    "52ar89rghM8E": [
        ("pool_create", "pumpfun", (3, 14), None, None, ()),
        (
            "swap",
            "pumpfun",
            (5, 3),
            (WSOL, 1100000000),
            ("ER2N5eaDoC68kNhj7LyaScimzq7deaqxiw88rewvxaKp", 37951768488745),
            (("pumpfun", "FFzxakVNzpirwMFtLyD22UZ6UM3KLF2EAGC2RxNPaYoH", 1100000000, 37951768488745),),
        ),
    ],
    "58FymkjJUeSF": [],
    "59GXCxvQmz3K": [
        (
            "swap",
            "pumpswap",
            (4, 4),
            (WSOL, 458092929),
            ("npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", 1806759473),
            (("pumpswap", "Ef7wUrbarRXHNMMgBs8cstSkzRttnstjMsniaq7zMp6j", 458092929, 1806759473),),
        )
    ],
    "5LUArY58kJQL": [
        ("transfer", "system", (2, None), (WSOL, 1), None, ()),
        ("transfer", "system", (3, None), (WSOL, 1), None, ()),
    ],
    "5Q8EMUvmvFFu": [
        (
            "swap",
            "jupiter_v6",
            (5, 4),
            (WSOL, 100000),
            ("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 14507),
            (
                ("orca_whirlpool", "8erNF5u3CHrqZJXtkfY8CjSxFYF1yqHmN8uDbAhk6tWM", 100000, 41064),
                ("meteora_pools", "BJ8HzSoWvg7w1ADnKg1sPWn4hbsT1oEwDTtt657UQQhb", 41064, 32413),
                ("orca_whirlpool", "DhcC4fxr85JBRG3kV2gTGNTMnhsXfzM6zJ8xbRjEPF98", 32413, 14507),
            ),
        )
    ],
    "5S4EEa5ssHzz": [
        (
            "swap",
            "pumpswap",
            (4, 4),
            (WSOL, 1800871065),
            ("npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", 7011546054),
            (("pumpswap", "Ef7wUrbarRXHNMMgBs8cstSkzRttnstjMsniaq7zMp6j", 1800871065, 7011546054),),
        )
    ],
    "5bvyp1nob51M": [
        (
            "swap",
            "pumpswap",
            (1, 4),
            ("EWV6bjhKF5zkXANCdWPvDs7dofRVk4pKyVTitqgEWj8E", 468934276696458),
            (WSOL, 201692493),
            (("pumpswap", "CW644FAJoQE9B9MGqmdfDseS4XfsmgS77ve7zJDJxiPS", 468934276696458, 201692493),),
        )
    ],
    "5hEWA54E6AGW": [
        (
            "swap",
            "jupiter_v6",
            (5, 5),
            (WSOL, 100000),
            ("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 15172),
            (
                ("meteora_dlmm", "A3tpNtTS8Dvd2pThP9p2X1whdmzudTmFMCWScxMzwZyL", 100000, 6039),
                ("meteora_dlmm", "HXAL1rR27ssNxUk8TLTN7fs7aZjt8MN539yToG8mc3pe", 6039, 16153),
                ("meteora_dlmm", "HbZLETvQTDFe8NkPRqgNr8e1e99rXNH2LcfXt2FJEUhu", 16153, 15172),
            ),
        )
    ],
    "63PQNtzDQdBD": [
        (
            "liquidity_add",
            "pumpswap",
            (6, 3),
            ("cbbtcf3aa214zXHbiAZQwf4122FBYbraNdFqgw4iMij", 882),
            ("BjSGDi4LrMUHkFeGPJdW5vJRtvL6oXbpiFdAaj5qMVjJ", 69508),
            (),
        )
    ],
    "8QTg427xrHug": [
        (
            "swap",
            "dflow",
            (3, 8),
            ("3cC1zb378zCEjTKctWVQBjdNGSU8YbDThB61M1mTbonk", 14020000000),
            ("9gQhbtdcjQRDQHducXs69bhgfrmKPK4jBffvWW5ebonk", 280637649999),
            (
                ("raydium_cpmm", "5SSjjkmMzfyY1rGZXPyUnfyL4zRGPyK97XDWxkW76ea2", 14005980000, 9064561),
                ("raydium_launchpad", "9CQBsANUUBZ1JfTs4DBp8bVxYapmDL3QnTVAXSNVYqLC", 9064561, 280637649999),
            ),
        )
    ],
    "JiqYGkWcYu8G": [
        (
            "swap",
            "raydium_route",
            (0, 0),
            ("HeLp6NuQkmYB4pYWo2zYs22mESHXPQYzXbB8n4V98jwC", 21898077),
            (WSOL, 28168),
            (
                ("raydium_clmm", "4RyuSgGdYeE7Qd4eKsuauTevWRreSfGScYqaygMEJXSq", 21898077, 4239),
                ("raydium_clmm", "ExcBWu8fGPdJiaF1b1z3iEef38sjQJks8xvj6M85pPY6", 4239, 28168),
            ),
        )
    ],
    "JunCgaxahgfa": [
        (
            "swap",
            "pumpswap",
            (4, 4),
            (WSOL, 868527873),
            ("npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", 3367610930),
            (("pumpswap", "Ef7wUrbarRXHNMMgBs8cstSkzRttnstjMsniaq7zMp6j", 868527873, 3367610930),),
        )
    ],
    "a9tyifZay3w5": [
        ("pool_create", "pumpfun", (2, 14), None, None, ()),
        (
            "swap",
            "pumpfun",
            (4, 4),
            (WSOL, 4040000000),
            ("4veK9R9GxmgxqkFhTa2VnE6MJ4YfTxnr92HF5gH5LcAF", 126235294117647),
            (("pumpfun", "CWZtLfpfZpgyR96bwDszjC7ecm1vJQPzvvgwA5VusWZg", 4000000000, 126235294117647),),
        ),
    ],
    "eTTeVo2hB4vF": [
        (
            "swap",
            "pumpswap",
            (4, 4),
            (WSOL, 1244771352),
            ("npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", 4829964889),
            (("pumpswap", "Ef7wUrbarRXHNMMgBs8cstSkzRttnstjMsniaq7zMp6j", 1244771352, 4829964889),),
        )
    ],
    "fFSAjDzu7Cdh": [
        ("transfer", "spl_token", (1, None), ("4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU", 1000000), None, ())
    ],
    "yorVNUA3L1Q7": [
        (
            "swap",
            "pumpswap",
            (4, 4),
            (WSOL, 573235768),
            ("npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", 2229122882),
            (("pumpswap", "Ef7wUrbarRXHNMMgBs8cstSkzRttnstjMsniaq7zMp6j", 573235768, 2229122882),),
        )
    ],
}
"""What each transaction decodes to (at most its first two activities), reviewed by hand against the
transactions' instructions, events and balances."""


@pytest.mark.parametrize("prefix", sorted(EXPECTED))
def test_each_transaction_decodes_to_its_reviewed_activities(prefix: str) -> None:
    """Kinds, venues, natural keys, raw amounts and hops of every corpus transaction, exactly."""
    # Arrange
    tx = load(file_of(prefix))

    # Act
    activities = decode_transaction(tx)

    # Assert
    expected = EXPECTED[prefix]
    assert [_summary(a) for a in activities[: len(expected)]] == expected


def test_spam_transfers_are_one_transfer_each() -> None:
    """A spam transaction of twenty 1-lamport sends decodes to twenty transfers with distinct keys."""
    # Arrange
    tx = load(file_of("5LUArY58kJQL"))

    # Act
    activities = decode_transaction(tx)

    # Assert
    assert len(activities) == 20
    assert {a.kind for a in activities} == {ActivityKind.TRANSFER}
    assert len({a.index for a in activities}) == 20


def test_natural_keys_are_unique_and_stable_across_runs() -> None:
    """Decoding twice yields identical activities, and no two activities of a transaction share a key."""
    for path in corpus_files():
        # Arrange
        tx_first, tx_second = load(path.name), load(path.name)

        # Act
        first = decode_transaction(tx_first)
        second = decode_transaction(tx_second)

        # Assert
        assert first == second
        assert len({a.index for a in first}) == len(first)


def test_activity_json_has_the_documented_shape() -> None:
    """`activity_to_json` gives raw amounts as strings and the index as outer/inner."""
    # Arrange
    (item,) = decode_transaction(load(file_of("2F7KM7K1cZBm")))

    # Act
    doc = activity_to_json(item)

    # Assert
    assert doc == {
        "signature": "2F7KM7K1cZBmmmLvNHBTvzqfGpZtfhU7aQ44Yz2hohw6HYppWT1KiY1vJVk6HGaw4vv1d98ijCHMixTPLQXSuwWf",
        "slot": None,
        "block_time": None,
        "kind": "swap",
        "index": {"outer": 4, "inner": 4},
        "trader": "7tN3U3EHDBhP9ETMhzG3Sd1rovFF6UfpWQ45YHyotMGC",
        "venue": "pumpswap",
        "input": {"mint": WSOL, "amount": "1483954199", "decimals": 9},
        "output": {"mint": "npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", "amount": "5789780068", "decimals": 6},
        "hops": [
            {
                "program": "pumpswap",
                "program_id": "pAMMBay6oceH9fJKBRHGP5D4bD4sWpmSwMn52FMfXEA",
                "pool": "Ef7wUrbarRXHNMMgBs8cstSkzRttnstjMsniaq7zMp6j",
                "input": {"mint": WSOL, "amount": "1483954199", "decimals": 9},
                "output": {
                    "mint": "npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump",
                    "amount": "5789780068",
                    "decimals": 6,
                },
                "price_impact_pct": doc["hops"][0]["price_impact_pct"],
                "reserves": [
                    {"mint": WSOL, "amount": "2889298628714", "decimals": 9},
                    {"mint": "npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump", "amount": "11300874311746", "decimals": 6},
                ],
            }
        ],
        "trader_deltas": {"npB9cxTzwUiGt7jk2dXZa52xZve8SgVD6Et9Bpipump": "5789780068", WSOL: "-1484009199"},
    }
    assert 0 < doc["hops"][0]["price_impact_pct"] < 1


@pytest.mark.parametrize(
    "path", corpus_files(), ids=lambda p: p.name[:12] + (".geyser" if ".geyser." in p.name else "")
)
def test_log_copies_stand_in_for_cpi_events_without_changing_anything(
    path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading Pump.fun/PumpSwap events from their log copies decodes exactly what base58 decoding does."""
    # Arrange
    with_twins = decode_transaction(load(path.name))
    monkeypatch.setattr(REGISTRY, "dual_programs", frozenset())

    # Act
    without_twins = decode_transaction(load(path.name))

    # Assert
    assert with_twins == without_twins
