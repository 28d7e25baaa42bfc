"""rollwise's build: the modules every proxied request runs through, compiled with mypyc.

Everything else is in ``pyproject.toml``. A wheel or ``pip install .`` compiles the
modules that ``rollwise.compilation.COMPILED_MODULES`` names to C extensions (about a
quarter less CPU per proxied request in ``bench/gateway.py``); their ``.py`` files ship
beside them, and Python prefers the compiled one. Each extension is optional: without a
C compiler the build warns and installs pure Python, which behaves the same.

``ROLLWISE_COMPILE=0`` builds pure Python. Editable installs (``pip install -e``, as
``make install`` makes) are always pure Python: a compiled module would hide every edit
to its source until the next build.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
# The commands that build an installable copy; setup.py also runs for metadata alone,
# which needs no C, and for editable installs ("editable_wheel", "develop"), which stay
# pure Python.
_BUILDING = {"build", "build_ext", "bdist_wheel", "install"}


def compiled_sources() -> list[str]:
    """The files of ``COMPILED_MODULES``, read from the module's source as a literal."""
    tree = ast.parse((HERE / "src/rollwise/compilation.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "COMPILED_MODULES"
            and node.value is not None
        ):
            names: tuple[str, ...] = ast.literal_eval(node.value)
            return ["src/" + name.replace(".", "/") + ".py" for name in names]
    raise SystemExit("setup.py: COMPILED_MODULES is missing from src/rollwise/compilation.py")


def compiled_modules() -> list[Extension]:
    if os.environ.get("ROLLWISE_COMPILE", "1") == "0" or not _BUILDING & set(sys.argv[1:]):
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("rollwise: mypyc is not installed; building pure Python", file=sys.stderr)
        return []
    # The build environment may lack rollwise's dependencies: their types are then Any,
    # which compiles to the same generic calls Python makes.
    extensions = mypycify(
        ["--ignore-missing-imports", *compiled_sources()], opt_level="3", group_name="rollwise"
    )
    for extension in extensions:
        extension.optional = True
    return extensions


setup(ext_modules=compiled_modules())
