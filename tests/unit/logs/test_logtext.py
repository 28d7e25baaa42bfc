"""Log lines carry caller-given text escaped: one line per record, no terminal control."""

from __future__ import annotations

import io
import logging

import pytest

from rollwise.logtext import LOG_FORMAT, EscapingFormatter, escape, setup_logging


@pytest.mark.parametrize(
    ("given", "written"),
    [
        pytest.param("v2", "v2", id="plain-text-unchanged"),
        pytest.param("modèle-β", "modèle-β", id="printable-unicode-unchanged"),
        pytest.param(
            "a\nINFO rollwise.controller: promoted",
            "a\\nINFO rollwise.controller: promoted",
            id="newline",
        ),
        pytest.param("a\r\n", "a\\r\\n", id="carriage-return"),
        pytest.param("\x1b[2J\x1b[31mred", "\\x1b[2J\\x1b[31mred", id="ansi-escape"),
        pytest.param("tab\there", "tab\\there", id="tab"),
        pytest.param("line\u2028sep", "line\\u2028sep", id="unicode-line-separator"),
        pytest.param("a\\nb", "a\\\\nb", id="backslash-doubled-so-escapes-are-unambiguous"),
        pytest.param("nul\x00", "nul\\x00", id="nul"),
    ],
)
def test_escape(given: str, written: str) -> None:
    assert escape(given) == written


def _format(record_args: tuple[object, ...], exc: bool = False) -> str:
    formatter = EscapingFormatter(LOG_FORMAT)
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    record = logging.LogRecord(
        "rollwise.dataplane",
        logging.WARNING,
        __file__,
        1,
        "unknown model %r, id %s",
        record_args,
        exc_info,
    )
    return formatter.format(record)


def test_a_forged_line_stays_inside_the_callers_value() -> None:
    line = _format(("iris", "x\nINFO rollwise.controller: promoted v2\x1b[0m"))
    assert "\n" not in line
    assert "\x1b" not in line
    assert line.startswith("WARNING rollwise.dataplane: unknown model 'iris', id x\\n")


def test_the_traceback_rollwise_writes_keeps_its_lines() -> None:
    text = _format(("iris", "a\nb"), exc=True)
    first, *rest = text.split("\n")
    assert "a\\nb" in first
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: boom"


def test_setup_logging_escapes_what_rollwise_logs() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        setup_logging("info")
        stream = io.StringIO()
        handler = root.handlers[0]
        assert isinstance(handler, logging.StreamHandler)
        handler.setStream(stream)
        logging.getLogger("rollwise.test").warning("label %s", "1\nERROR forged")
        assert stream.getvalue() == "WARNING rollwise.test: label 1\\nERROR forged\n"
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
