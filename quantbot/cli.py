"""The `quantbot` command.

Every subcommand reads one `Settings` (profile `local` unless `--profile`/`QUANTBOT_PROFILE` says
otherwise). A bad configuration exits with status 78 and one line naming the key; `--help` always
works, whatever the configuration.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
import orjson
from rich.console import Console
from rich.table import Table

from quantbot import __version__
from quantbot.errors import EX_CONFIG, ConfigError, QuantbotError
from quantbot.settings import Settings, load_settings

log = logging.getLogger("quantbot")
F = TypeVar("F", bound=Callable[..., Any])

EX_UNAVAILABLE = 69
"""sysexits.h: a service the command needs is unavailable (a store is down)."""

console = Console()
err_console = Console(stderr=True)


class _Context:
    """Lazily built settings, so `--help` and `--version` never depend on the configuration."""

    def __init__(self, profile: str | None, config_dir: Path | None, log_level: str | None) -> None:
        self.profile = profile
        self.config_dir = config_dir
        self.log_level = log_level
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.profile, self.config_dir)
            configure_logging(self.log_level or self._settings.logging.level, self._settings.logging.format)
        return self._settings


pass_context = click.make_pass_decorator(_Context)


def configure_logging(level: str, fmt: str) -> None:
    """Module loggers everywhere; this is the one place that decides where their records go."""
    if fmt == "json":
        formatter: logging.Formatter = _JsonFormatter()
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(
            {
                "ts": self.formatTime(record),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        ).decode()


def _fail(message: str, status: int) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(status)


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    return table


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="quantbot")
@click.option(
    "--profile",
    envvar="QUANTBOT_PROFILE",
    help="Configuration profile: local (embedded stack, the default), production, or any config/<name>.toml.",
)
@click.option(
    "--config-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="QUANTBOT_CONFIG_DIR",
    help="Directory of the TOML profiles (default: ./config).",
)
@click.option("--log-level", type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]), help="Overrides logging.level.")
@click.pass_context
def cli(ctx: click.Context, profile: str | None, config_dir: Path | None, log_level: str | None) -> None:
    """quantbot: Solana DEX trades, prices, whales and signals into InfluxDB, MongoDB, Redis and PostgreSQL.

    \b
    First steps on a new machine:
      quantbot stack up        start the embedded stores this profile needs
      quantbot migrate up      create the schema in all four stores
      quantbot doctor          check every store is reachable and migrated

    Configuration: config/default.toml, then config/<profile>.toml, then the environment
    (QUANTBOT_<SECTION>_<KEY>, e.g. QUANTBOT_POSTGRES_URL). `quantbot config show` prints the result.
    """
    ctx.obj = _Context(profile, config_dir, log_level)


# ---------------------------------------------------------------------------------------------- config


@cli.group()
def config() -> None:
    """Inspect the effective configuration."""


@config.command("show")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml", show_default=True)
@pass_context
def config_show(ctx: _Context, fmt: str) -> None:
    """Print the effective configuration, secrets and URL passwords redacted.

    Each key can be overridden as QUANTBOT_<SECTION>_<KEY>; secrets (postgres.password,
    mongo.password, redis.password, influx.token) can only be set that way.
    """
    data = ctx.settings.redacted()
    if fmt == "json":
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
        return
    click.echo(f'profile = "{data.pop("profile")}"')
    for section, values in data.items():
        click.echo(f"\n[{section}]")
        for key, value in values.items():
            click.echo(f"# {key} = (unset)" if value is None else f"{key} = {orjson.dumps(value).decode()}")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script: maps the error tree onto exit statuses."""
    try:
        cli.main(args=argv, prog_name="quantbot", standalone_mode=False)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except ConfigError as exc:
        _fail(str(exc), EX_CONFIG)
    except QuantbotError as exc:
        _fail(str(exc), 1)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    sys.exit(0)
