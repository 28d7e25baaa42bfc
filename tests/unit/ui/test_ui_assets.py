"""The dashboard's packaged files: what they may not contain, and how they are served.

The script must never turn text into markup or code (``innerHTML``, ``eval`` and the
like): names and failure reasons in the API's answers are written by whoever deploys a
model. The token lives in session storage only and is never written to the console.
"""

from __future__ import annotations

import re
from importlib.resources.abc import Traversable
from pathlib import Path

import pytest

from rollwise.ui.routes import ASSET_TYPES, load_assets, load_page, static_folder

FORBIDDEN_IN_SCRIPT = {
    "innerHTML": re.compile(r"innerHTML"),
    "outerHTML": re.compile(r"outerHTML"),
    "insertAdjacentHTML": re.compile(r"insertAdjacentHTML"),
    "eval(": re.compile(r"\beval\s*\("),
    "new Function": re.compile(r"\bnew\s+Function\b"),
    "document.write": re.compile(r"document\s*\.\s*write"),
    "localStorage": re.compile(r"localStorage"),
    "console.": re.compile(r"\bconsole\s*\."),
    # A string given to setTimeout is evaluated as code.
    "setTimeout with a string": re.compile(r"setTimeout\s*\(\s*[\"'`]"),
}


OWN_SCRIPTS = ["dashboard.js", "model-page.js", "rollout-page.js"]
VENDORED = {"uplot.iife.min.js", "uplot.min.css"}
"""A charting library shipped as its authors publish it (its licence beside it): it is
not this project's code to scan, and it is given only numbers, never text."""


def scripts() -> list[Traversable]:
    return [
        entry
        for entry in static_folder().iterdir()
        if entry.name.endswith(".js") and entry.name not in VENDORED
    ]


def test_the_package_has_its_scripts_to_scan() -> None:
    assert sorted(entry.name for entry in scripts()) == OWN_SCRIPTS


@pytest.mark.parametrize("script", scripts(), ids=lambda entry: entry.name)
def test_the_script_never_turns_text_into_markup_or_code(script: Traversable) -> None:
    source = script.read_text(encoding="utf-8")
    found = [name for name, pattern in FORBIDDEN_IN_SCRIPT.items() if pattern.search(source)]
    assert found == [], f"{script.name} uses {', '.join(found)}"


def test_the_scan_catches_what_it_looks_for() -> None:
    # The guard above is only worth something if its patterns match real misuse.
    samples = {
        "innerHTML": "node.innerHTML = name;",
        "eval(": "eval (text)",
        "new Function": "new Function('return 1')",
        "document.write": "document.write(x)",
        "localStorage": "window.localStorage.setItem('t', token)",
        "console.": "console.log(token)",
        "setTimeout with a string": "setTimeout('poll()', 10)",
    }
    for name, sample in samples.items():
        assert FORBIDDEN_IN_SCRIPT[name].search(sample), name


def test_every_packaged_asset_is_served_with_its_type() -> None:
    assets = load_assets()
    assert set(assets) == {
        *OWN_SCRIPTS,
        *VENDORED,
        "dashboard.css",
        "model-page.css",
        "rollout-page.css",
        "logo.svg",
    }
    for name, asset in assets.items():
        assert asset.media_type == ASSET_TYPES["." + name.rpartition(".")[2]]
        assert asset.body


def test_only_files_of_a_known_type_are_assets(tmp_path: Path) -> None:
    for name in ("app.js", "look.CSS", "index.html", "notes.txt", "README", ".env"):
        (tmp_path / name).write_text("x")
    (tmp_path / "nested.js").mkdir()
    assert sorted(load_assets(tmp_path)) == ["app.js", "look.CSS"]


def test_the_page_is_in_the_package() -> None:
    page = load_page().decode("utf-8")
    assert page.lower().startswith("<!doctype html>")
    assert "/ui/static/dashboard.js" in page


def test_the_svg_holds_no_script() -> None:
    svg = load_assets()["logo.svg"].body.decode("utf-8").lower()
    assert "<script" not in svg and "javascript:" not in svg
    assert not re.search(r"\son\w+\s*=", svg)


def test_every_file_the_page_names_is_served() -> None:
    page = load_page().decode("utf-8")
    named = re.findall(r'(?:src|href)="/ui/static/([^"]+)"', page)
    assert "dashboard.js" in named
    assert sorted(set(named) - set(load_assets())) == []


def test_the_vendored_chart_library_ships_with_its_licence_and_version() -> None:
    folder = static_folder()
    licence = folder.joinpath("uplot.LICENSE").read_text(encoding="utf-8")
    assert "MIT License" in licence and "Leon Sorokin" in licence
    script = folder.joinpath("uplot.iife.min.js").read_text(encoding="utf-8")
    style = folder.joinpath("uplot.min.css").read_text(encoding="utf-8")
    # The script and its style sheet come from one release, named at the top of each.
    shipped = re.match(r"/\*! https://github\.com/leeoniya/uPlot \(v([\d.]+)\) \*/", script)
    assert shipped is not None
    assert style.startswith(f"/*! uPlot v{shipped.group(1)} ")
