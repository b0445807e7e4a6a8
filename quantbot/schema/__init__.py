"""The platform's storage schema, one module per store, after `../shared/seed/database-schema.md`.

- `postgres`: numbered SQL migrations (the eleven tables, their indexes) applied up and down under a
  ledger, safe to run from two processes at once.
- `mongo`: the four collections with `$jsonSchema` validators and named indexes, applied in place.
- `influx`: typed line-protocol builders for the four measurements; the bucket and its retention.
- `redis_keys`: key builders, hash field mappers and the TTL policy of the four key patterns.

Nothing here opens a connection or imports a store's client at run time: the appliers take clients
that the caller built.
"""

from quantbot.schema import influx, mongo, postgres, redis_keys

__all__ = ["influx", "mongo", "postgres", "redis_keys"]
