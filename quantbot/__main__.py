"""`python -m quantbot` is the `quantbot` command."""

from quantbot.ops.cli import main

main()
