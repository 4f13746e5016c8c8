"""Log redaction for the server: secret values in query strings, headers and messages.

uvicorn's access log writes each request's full path with its raw (percent-encoded) query
string, so a key sent as ``?api_key=KEY`` (refused, but sent), ``?api%5Fkey=KEY`` or a signed
output URL would land in the log. :func:`redact` finds every ``name=value`` (also ``name: value``
as in headers, ``"name": "value"`` as in JSON or a dict's repr, and ``name%3Dvalue``), decodes
the name's percent-escapes and, when it names a secret (:data:`SECRET_NAMES`, or ends in
``_key``/``_token``/``_secret``/...; case and ``-``/``_`` ignored), writes ``<redacted>`` for the
value. :class:`RedactingFilter` applies it to every record it sees; :func:`install_redaction`
puts it on uvicorn's loggers, :func:`log_config` on the handlers of uvicorn's own logging
configuration (what ``bgcut-nb serve`` runs with).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any
from urllib.parse import unquote

__all__ = [
    "RedactingFilter",
    "install_redaction",
    "log_config",
    "redact",
    "SECRET_NAMES",
    "SECRET_PARAMS",
]

#: Names (percent-decoded, lower case, ``-`` read as ``_``) whose values are never logged.
SECRET_NAMES = frozenset(
    {
        "access_token", "api_key", "api_token", "apikey", "auth", "authorization", "bearer",
        "client_secret", "cookie", "credentials", "id_token", "key", "passwd", "password",
        "private_key", "proxy_authorization", "pwd", "refresh_token", "secret", "session",
        "set_cookie", "sig", "signature", "token", "x_api_key", "x_auth_token",
    }
)  # fmt: skip
#: Kept for callers of the first release: the query names it redacted.
SECRET_PARAMS = tuple(sorted(SECRET_NAMES))
_SECRET_SUFFIXES = ("_key", "_token", "_secret", "_password", "_signature", "_credentials")
_PAIR = re.compile(
    r"""(?P<name>(?<![\w%.\-])[\w%.\-]+)             # a name, maybe percent-encoded
        (?P<sep>["']?[ \t]*(?:=|%3[dD]|:)[ \t]*)        # =, an encoded =, or a header's :
        (?P<scheme>(?:bearer|basic|token|digest)(?:[ \t]+|%20|\+))?
        (?P<value>"[^"]*"|'[^']*'|[^\s&;#"',}]+)""",
    re.IGNORECASE | re.VERBOSE,
)
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")
_REDACTED = "<redacted>"


def is_secret_name(name: str) -> bool:
    """Whether a parameter or header name names a secret, in any percent-encoding."""
    for _ in range(3):  # doubly encoded names too
        decoded = unquote(name)
        if decoded == name:
            break
        name = decoded
    name = name.strip().lower().replace("-", "_")
    return name in SECRET_NAMES or name.endswith(_SECRET_SUFFIXES)


def _pair(match: re.Match[str]) -> str:
    name, sep, scheme, value = match.group("name", "sep", "scheme", "value")
    if is_secret_name(name):
        return f"{name}{sep}{scheme or ''}{_REDACTED}"
    # not a secret itself, but its value may hold one (``http://h/?api_key=...``)
    return f"{name}{sep}{scheme or ''}{redact(value)}"


def redact(text: str) -> str:
    """``text`` with the values of secret names and bearer tokens replaced by ``<redacted>``."""
    if "=" in text or ":" in text or "%3" in text:
        text = _PAIR.sub(_pair, text)
    if "earer" in text:
        text = _BEARER.sub(rf"\g<1>{_REDACTED}", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record through :func:`redact`: each string argument (so formatters that read
    the arguments, like uvicorn's access log, still can), then the whole message when a secret
    is only seen once the arguments are in it (``"key=%s", KEY``), and the traceback text."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        try:
            message = record.getMessage()
        except Exception:  # a broken format: leave it for logging to report
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_LOGGERS = ("uvicorn.access", "uvicorn.error", "bgcut_nb.server")


def install_redaction() -> None:
    """Put one :class:`RedactingFilter` on uvicorn's and the server's loggers (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(RedactingFilter())


def log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with redaction on each of its handlers."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact"] = {"()": f"{__name__}.RedactingFilter"}
    for handler in config.get("handlers", {}).values():
        handler.setdefault("filters", []).append("redact")
    return config
