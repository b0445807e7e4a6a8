"""`python -m quantbot` is the `quantbot` command."""

from quantbot.cli import main

main()
