"""Log redaction for the server: query ``api_key``/``token`` values and URL signatures.

uvicorn's access log writes each request's full path with its query string, so a key sent as
``?api_key=KEY`` (refused, but sent) or a signed output URL would land in the log.
:class:`RedactingFilter` rewrites such values to ``<redacted>`` in every record it sees;
:func:`install_redaction` puts it on uvicorn's loggers, :func:`log_config` on the handlers of
uvicorn's own logging configuration (what ``bgcut-nb serve`` runs with).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

__all__ = ["RedactingFilter", "install_redaction", "log_config", "redact", "SECRET_PARAMS"]

#: Query parameters whose values are never logged.
SECRET_PARAMS = ("api_key", "apikey", "key", "token", "access_token", "signature", "sig")
_NAMES = "|".join(SECRET_PARAMS)
_QUERY = re.compile(
    r"(?P<name>(?:^|(?<=[?&;]))(?:" + _NAMES + r"))=(?P<value>[^&#\s\"']*)", re.IGNORECASE
)
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',]+")
_REDACTED = "<redacted>"


def redact(text: str) -> str:
    """``text`` with secret query values and bearer tokens replaced by ``<redacted>``."""
    if "=" in text:
        text = _QUERY.sub(lambda m: f"{m.group('name')}={_REDACTED}", text)
    if "earer" in text:
        text = _BEARER.sub(rf"\g<1>{_REDACTED}", text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message and string arguments through :func:`redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
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
