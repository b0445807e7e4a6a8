"""The project's exception tree.

```
QuantbotError
 ├── ConfigError            bad configuration; the CLI exits with status 78 (EX_CONFIG)
 ├── SchemaError            a store's schema is not what this version expects (edited migration, ...)
 ├── ResumeRefusedError     a recovery snapshot is of other input than given (another recording, ...)
 └── StoreError             a store refused or failed a request
      └── TransientStoreError   connection lost, timeout, server restarting: retrying may succeed
```

Whether an error is worth retrying is a property of its type (`retryable`), never of its message.
Decoding errors are not here: bad input is data (a dead-letter record), not an exception.
"""

from __future__ import annotations

EX_CONFIG = 78
"""sysexits.h: configuration error. Process supervisors treat it as "do not restart in a loop"."""


class QuantbotError(Exception):
    """Base of every error quantbot raises on purpose."""

    retryable: bool = False


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


class StoreError(QuantbotError):
    """A store refused or failed a request."""


class TransientStoreError(StoreError):
    """A store is unreachable or restarting; the same request may succeed later."""

    retryable = True
