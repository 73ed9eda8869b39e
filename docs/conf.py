"""Sphinx configuration: ``pip install -e ".[docs]"`` then ``sphinx-build -W docs docs/_build``."""

import ladam_optax

project = "ladam-optax"
author = "the ladam-optax developers"
copyright = "2026, the ladam-optax developers"
release = version = ladam_optax.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
myst_enable_extensions = ["dollarmath"]
autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"ladam-optax {release}"
