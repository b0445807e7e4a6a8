"""One decoder module per DEX program; `quantbot.solana.decode` dispatches to them by program id."""
