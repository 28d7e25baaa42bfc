"""`rollwise status` shows, per shadow version, the mirrored requests it dropped."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console

from rollwise.status_table import dropped_text, status_notes, status_table


def version(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "backend": "fake",
        "health": "ready",
        "reason": "",
        "weight": 0,
        "effective_weight": 0,
        "mirror": 0,
        "served": None,
        "shadow": None,
        "preview": None,
        **fields,
    }


@pytest.mark.parametrize(
    ("shadow", "expected"),
    [
        pytest.param(None, "-", id="not mirrored to"),
        pytest.param({"requests": 300, "dropped": 0}, "0", id="mirrored, none dropped"),
        pytest.param({"requests": 2988, "dropped": 12}, "12 (0.40%)", id="some dropped"),
        pytest.param({"requests": 0, "dropped": 5}, "5 (100.00%)", id="all dropped"),
    ],
)
def test_dropped_text(shadow: dict[str, Any] | None, expected: str) -> None:
    assert dropped_text(shadow) == expected


def rows(info: dict[str, Any]) -> dict[str, list[str]]:
    console = Console(width=250, record=True)
    console.print(status_table(info))
    text = console.export_text().splitlines()
    header = next(line for line in text if "┃" in line)
    body = [line for line in text if "│" in line]
    cells = [[cell.strip() for cell in line.split("│")[1:-1]] for line in body]
    return {row[0]: row for row in cells} | {"": [c.strip() for c in header.split("┃")[1:-1]]}


def test_the_status_table_has_the_drops_of_each_shadow() -> None:
    info = {
        "name": "iris",
        "stable": "v1",
        "window_s": 300.0,
        "versions": [
            version("v1", weight=100, effective_weight=100, served={"requests": 3000}),
            version(
                "v2",
                mirror=100,
                shadow={"requests": 2988, "dropped": 12, "compared": 2988, "agreement": 0.5},
            ),
            version("v3", health="failed", reason="cannot import target"),
        ],
    }
    table = rows(info)
    dropped = table[""].index("dropped")
    assert table["v1"][dropped] == "-"
    assert table["v2"][dropped] == "12 (0.40%)"
    assert table["v2"][table[""].index("agree")] == "50.00%"
    assert table["v3"][dropped] == "-"
    assert status_notes(info) == ["v3: cannot import target"]
