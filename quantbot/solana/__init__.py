"""Solana transaction decoding: normalise any `getTransaction`-like JSON, recognise DEX activity.

Public API:

- `quantbot.solana.normalise.parse_transactions(raw) -> list[Transaction]` (raises
  `TransactionFormatError`), and `normalise(document)` for already-parsed JSON;
- `quantbot.solana.decode.decode_transaction(tx) -> list[Activity]` (never raises);
- `quantbot.solana.decode.activity_to_json(activity) -> dict` (the `quantbot decode` line shape);
- `quantbot.solana.decode.decode_files(paths, out, err) -> int` (what `quantbot decode PATH...` runs).

Layout: `transaction` (the normalised model), `normalise` (encodings and shapes), `codec` (base58/64),
`borsh` (layouts), `events` (CPI and log events), `context` (what decoders share), `programs/` (one
decoder per program), `decode` (dispatch, the CLI's file loop and the JSON shape).
"""
