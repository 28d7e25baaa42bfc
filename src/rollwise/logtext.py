"""Log lines that a caller cannot forge: every character a terminal or a log reader
would act on is written as an escape.

Model names, version names, request ids, labels and upstream messages come from
callers and reach log messages. A newline in one of them would start a line that looks
like rollwise wrote it, and an ANSI sequence could rewrite what an operator's terminal
shows; so the message (not the traceback, which rollwise writes itself) is escaped as
a Python string literal would escape it, without the quotes.
"""

from __future__ import annotations

import logging

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def escape(text: str) -> str:
    """``text`` with every non-printable character (newlines, tabs, ESC, ...) escaped;
    backslashes too, so that an escape in the output always means rollwise wrote it."""
    if text.isprintable() and "\\" not in text:
        return text
    parts: list[str] = []
    for char in text:
        if char == "\\":
            parts.append("\\\\")
        elif char.isprintable():
            parts.append(char)
        else:
            parts.append(repr(char)[1:-1])
    return "".join(parts)


class EscapingFormatter(logging.Formatter):
    """A formatter whose message part is one line of printable text, whatever the
    record's arguments held; the traceback that may follow it is left as written."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape(record.message)
        return super().formatMessage(record)


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` through the escaping formatter."""
    handler = logging.StreamHandler()
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    # Migration chatter is noise at start-up; its warnings still show.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
