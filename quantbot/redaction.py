"""Secrets out of everything quantbot prints: URLs, libpq DSNs, error messages and log lines.

A secret can ride in a connection string in several spellings, and every one of them is masked with
`***` while the rest (scheme, user, host, port, path, other parameters) stays readable:

- the password of a URL's user info: `postgresql://bob:SECRET@db/q`, `redis://:SECRET@cache:6379/0`;
- a secret query parameter: `?password=`, `?sslpassword=`, `?api-key=` (Helius, `https://` and `wss://`),
  `?api_key=`, `?apikey=`, `?x-api-key=`, `?token=`, `?access_token=`, `?auth=` (names case-insensitive);
- a libpq keyword/value DSN: `host=db password=SECRET`, `password='with spaces'`;
- a key in the URL's path, as QuickNode (`https://name.solana-mainnet.quiknode.pro/KEY/`) and Triton
  (`https://name.mainnet.rpcpool.com/KEY`) issue them: a path segment of `PATH_KEY_MIN_CHARS` or more
  letters, digits, `-` and `_` mixing letters and digits. No endpoint path of ours or of a store looks
  like that; a path that holds a long identifier (a signature in an explorer URL) is masked too, which
  costs a log reader a detail, not a secret.

`redact_url(url)` is for one configured value (a URL that cannot be parsed is masked whole, since where
its secret starts is unknown); `redact(text)` is for free text that may quote any number of them, such as
a driver's exception message or a log record. Both are pure string functions: no I/O.
"""

from __future__ import annotations

import re
import urllib.parse

REDACTED = "***"

SECRET_PARAMETERS = (
    "password",
    "sslpassword",
    "api-key",
    "api_key",
    "apikey",
    "x-api-key",
    "token",
    "access_token",
    "refresh_token",
    "auth",
    "secret",
    "client_secret",
)
"""Names of URL query parameters and DSN keywords whose value is a secret (compared case-insensitively)."""

_NAMES = "|".join(re.escape(name) for name in sorted(SECRET_PARAMETERS, key=len, reverse=True))

_SECRET_QUERY = re.compile(rf"(?i)(^|[&;])({_NAMES})=([^&;#]*)")
"""One secret parameter in a URL's query string."""

_SECRET_PAIR = re.compile(
    rf"""(?ix)
    (?<![\w.-])({_NAMES})      # the keyword, not the tail of a longer one (`notoken`, `x.token`)
    (\s*=\s*)
    ( '(?:[^'\\]|\\.)*'        # libpq quoted value, backslash escapes
    | "(?:[^"\\]|\\.)*"
    | [^\s&;,'"]+ )
    """
)
"""One `keyword=value` pair with a secret keyword, in a DSN, a query string or free text."""

PATH_KEY_MIN_CHARS = 20
"""Shortest path segment taken for a key: providers' keys are 32+ characters, API paths' words far shorter."""
_PATH_KEY = re.compile(rf"(?<=/)(?=[A-Za-z_-]*\d)(?=[\d_-]*[A-Za-z])[A-Za-z0-9_-]{{{PATH_KEY_MIN_CHARS},}}(?=/|$)")
"""One path segment that looks like a key (see the module docstring)."""

_URL = re.compile(r"(?i)\b[a-z][a-z0-9+.-]*://[^\s'\"<>`]+")
"""A URL in free text: from its scheme to the next blank or quote."""

_TRAILING_PUNCTUATION = ".,:;)]}"
"""Characters that end a sentence around a URL rather than belong to it (`see https://x/?token=T.`)."""


def redact_url(url: str) -> str:
    """`url` with every secret masked; safe to print and log.

    A string without `://` is treated as a libpq keyword/value DSN (`host=db password=x`). A URL
    that cannot be parsed is replaced by `***` as a whole.

    Args:
        url: a store or provider URL, or a DSN.

    Returns:
        The same string with user-info passwords and secret parameters replaced by `***`.
    """
    if "://" not in url:
        return _SECRET_PAIR.sub(_masked_pair, url)
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return REDACTED
    user, hosts, has_password = _userinfo(parts)
    netloc = f"{user}:{REDACTED}@{hosts}" if has_password else parts.netloc
    query = _SECRET_QUERY.sub(rf"\1\2={REDACTED}", parts.query)
    path = _PATH_KEY.sub(REDACTED, parts.path)
    if netloc == parts.netloc and query == parts.query and path == parts.path:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query, path=path))


def without_secrets(url: str) -> str:
    """`url` with its user-info password and secret query parameters removed (not masked).

    The form worth recording for a server that needs none of them (the embedded stack's, trust auth).
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return REDACTED
    user, hosts, has_password = _userinfo(parts)
    netloc = (f"{user}@{hosts}" if user else hosts) if has_password else parts.netloc
    kept = [
        pair
        for pair in re.split(r"[&;]", parts.query)
        if pair and pair.split("=", 1)[0].lower() not in SECRET_PARAMETERS
    ]
    query = "&".join(kept)
    if netloc == parts.netloc and query == parts.query:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _userinfo(parts: urllib.parse.SplitResult) -> tuple[str, str, bool]:
    """(user, hosts, whether a password follows the user) of a URL's network location.

    Split at the last `@`, so that a password containing `@` stays whole, and a multi-host Mongo
    location keeps all its hosts.
    """
    userinfo, at, hosts = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return userinfo, hosts if at else parts.netloc, False
    return userinfo.split(":", 1)[0], hosts, True


def redact(text: str) -> str:
    """`text` with the secrets of every URL and `keyword=value` pair in it masked.

    For free text that may quote a connection string: exception messages, log records, reports.
    """
    return _SECRET_PAIR.sub(_masked_pair, _URL.sub(_masked_url, text))


def _masked_url(found: re.Match[str]) -> str:
    url = found.group(0)
    body = url.rstrip(_TRAILING_PUNCTUATION)
    return redact_url(body) + url[len(body) :]


def _masked_pair(found: re.Match[str]) -> str:
    return f"{found.group(1)}{found.group(2)}{REDACTED}"


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (its type when it has none), secrets masked.

    What a report or a status line quotes of a driver's error: the first line says what went wrong, and a
    driver's message can quote the connection string it was given.
    """
    text = str(exc).strip() or type(exc).__name__
    return redact(text.splitlines()[0])
