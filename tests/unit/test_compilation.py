"""The compiled build: every module it lists exists, and a build runs what it claims.

``make test`` runs the suite twice: against the wheel a user's pip builds, with
``ROLLWISE_EXPECT_COMPILED=1``, and against the pure Python source with ``=0``. A wheel
whose compilation failed still installs (each extension is optional), so without this
check the compiled pass would quietly test pure Python.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

import pytest

from rollwise.compilation import COMPILED_MODULES, compiled_here


@pytest.mark.parametrize("name", COMPILED_MODULES)
def test_each_listed_module_exists(name: str) -> None:
    assert importlib.util.find_spec(name) is not None


def test_the_list_names_each_module_once() -> None:
    assert len(set(COMPILED_MODULES)) == len(COMPILED_MODULES)


def test_the_build_runs_compiled_exactly_as_expected() -> None:
    expected = os.environ.get("ROLLWISE_EXPECT_COMPILED")
    if expected not in ("0", "1"):
        pytest.skip("ROLLWISE_EXPECT_COMPILED is not set (make test sets it to 1, then 0)")
    assert compiled_here() == (list(COMPILED_MODULES) if expected == "1" else [])


def _awaits_in_handlers(source: str) -> list[int]:
    """Lines of an await (or async with/for) inside an except handler or a finally block,
    not counting functions defined there."""

    def inner(node: ast.AST) -> list[ast.AST]:
        found: list[ast.AST] = []
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                continue
            found += [child, *inner(child)]
        return found

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Try | ast.TryStar):
            blocks: list[ast.AST] = [*node.handlers, *node.finalbody]
            for block in blocks:
                lines += [
                    n.lineno
                    for n in [block, *inner(block)]
                    if isinstance(n, ast.Await | ast.AsyncWith | ast.AsyncFor)
                ]
    return sorted(set(lines))


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        pytest.param(
            "async def f():\n    try:\n        pass\n    except E:\n        await g()\n",
            [5],
            id="await-in-except",
        ),
        pytest.param(
            "async def f():\n    try:\n        pass\n    finally:\n        await g()\n",
            [5],
            id="await-in-finally",
        ),
        pytest.param(
            "async def f():\n    try:\n        await g()\n    except E as e:\n"
            "        x = e\n    await h()\n",
            [],
            id="await-after-the-try",
        ),
        pytest.param(
            "async def f():\n    try:\n        pass\n    except E:\n"
            "        async def later():\n            await g()\n",
            [],
            id="a-function-defined-there",
        ),
    ],
)
def test_the_check_finds_awaits_in_handlers(source: str, lines: list[int]) -> None:
    assert _awaits_in_handlers(source) == lines


@pytest.mark.parametrize("name", COMPILED_MODULES)
def test_no_compiled_module_awaits_in_an_except_or_finally_block(name: str) -> None:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin is not None
    source_path = Path(spec.origin)
    if source_path.suffix != ".py":
        source_path = source_path.with_name(name.rpartition(".")[2] + ".py")
    assert _awaits_in_handlers(source_path.read_text(encoding="utf-8")) == []
