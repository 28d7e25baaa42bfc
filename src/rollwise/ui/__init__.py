"""The browser dashboard the gateway serves at ``/ui``.

One static page, a small script and a style sheet, shipped inside the package and read
with :mod:`importlib.resources`. The page holds no data of its own: it signs in with a
token and reads everything from the control API under ``/api/v1``, so it sees exactly
what the token's role may see. :mod:`rollwise.ui.routes` serves the files.
"""
