"""The project's exception tree.

```
QuantbotError
 ├── ConfigError            bad configuration; the CLI exits with status 78 (EX_CONFIG)
 ├── SchemaError            a store's schema is not what this version expects (edited migration, ...)
 ├── SchemaInUseError       a destructive migration refused: flows are running on the schema (exit 75)
 ├── ResumeRefusedError     a recovery snapshot is of other input than given (another recording, ...)
 └── StackError             an embedded server could not be started or stopped (quantbot.stack_state)
```

The CLI exits with status 1 for any other QuantbotError. Store failures are the drivers' own exceptions:
whether one is worth retrying is each sink's `is_transient` predicate (`sinks/`), applied by the retry
policy in `sinks/retry.py`. Bad input is not here either: it is data (a dead-letter record), not an exception.
"""

from __future__ import annotations

EX_CONFIG = 78
"""sysexits.h: configuration error. Process supervisors treat it as "do not restart in a loop"."""
EX_TEMPFAIL = 75
"""sysexits.h: temporary failure, "the user is invited to retry": the same command succeeds later."""


class QuantbotError(Exception):
    """Base of every error quantbot raises on purpose."""


class ConfigError(QuantbotError):
    """The configuration is invalid; the message names the key, where it came from, and what is wrong."""

    def __init__(self, key: str, problem: str, source: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.source = source
        where = f" (from {source})" if source else ""
        super().__init__(f"configuration key `{key}`{where}: {problem}")


class SchemaError(QuantbotError):
    """A store's schema does not match what this version of quantbot defines."""


class ResumeRefusedError(QuantbotError):
    """A snapshot would resume other input than the input given; the message says what differs, how to start fresh."""


class SchemaInUseError(QuantbotError):
    """A destructive migration would change the schema under running flows, and they did not stop in time.

    The same command succeeds once the flows have finished or been stopped. The message names each
    holder (server pid, application name, client address) and what to do.
    """
