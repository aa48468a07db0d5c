"""Stream URLs without their secrets: every place the service shows a URL (logs, ``/health``, events, MQTT) shows
:func:`redact_url` of it, and :class:`RedactingFilter` rewrites any URL inside a log line (FFmpeg's errors quote the
URL they failed to open, password included).

What is hidden: the password of ``scheme://user:password@host`` (the user name stays, so a wrong account can still be
told apart) and the values of query parameters that name a secret (``password``, ``passwd``, ``pwd``, ``pass``,
``token``, ``key``, ``secret``, ``auth``, ``signature``, ...; many cameras take ``?user=admin&password=...``).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["MASK", "RedactingFilter", "redact_text", "redact_url"]

MASK = "***"
_SECRET_PARAM = re.compile(r"pass|pwd|token|key|secret|auth|sig|credential", re.IGNORECASE)
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***``; text that is not a URL unchanged."""
    text = str(url)
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:  # a malformed URL (e.g. a bad IPv6 bracket): hide everything between :// and @
        return re.sub(r"://[^/@]*@", f"://{MASK}@", text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{userinfo}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _SECRET_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL inside ``text`` redacted (:func:`redact_url`)."""
    text = str(text)
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """A handler filter: a log record whose message holds a URL is rewritten with :func:`redact_text` (its arguments
    formatted in first). Attach it to the handlers (a logger's filter misses its children's records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's message in place; keeps every record."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record: leave it to the handler to report
            return True
        redacted = redact_text(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:  # format the traceback now, to redact what it quotes
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True
