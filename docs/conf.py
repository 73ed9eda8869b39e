"""Sphinx configuration: ``pip install -e ".[docs]"`` then ``sphinx-build -W docs docs/_build``.

The math is typeset by MathJax served from the built site itself, never from a CDN: many training
clusters have no internet, and a page whose MathJax fails to load shows raw TeX. The build
installs the npm ``mathjax`` package pinned in ``package-lock.json`` (``npm ci``, from the npm
registry only, the first time or when the pin changes) and copies it with its font into
``_static/mathjax`` of the output. MathJax rather than build-time rendering: it is what Sphinx
and readers expect, needs only Node.js's ``npm`` at build time, and keeps the source ``$...$``
unchanged; the copy lives in the build output, so the repository holds no vendored megabytes.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

from sphinx.errors import ConfigError

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
# The package's annotations are strings (``from __future__ import annotations``), so these names
# are shown as written instead of expanded: ``ArrayLike`` is a union of eight types.
autodoc_type_aliases = {
    "jax.typing.ArrayLike": "jax.typing.ArrayLike",
    "optax.ScalarOrSchedule": "optax.ScalarOrSchedule",
    "optax.Schedule": "optax.Schedule",
    "optax.Params": "optax.Params",
    "FoldSpec": "ladam_optax.FoldSpec",
}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
exclude_patterns = ["_build", "node_modules", "package.json", "package-lock.json"]
html_theme = "furo"
html_title = f"ladam-optax {release}"

DOCS = pathlib.Path(__file__).resolve().parent
NODE_MODULES = DOCS / "node_modules"
MATHJAX_VERSION = json.loads((DOCS / "package.json").read_text())["dependencies"]["mathjax"]
# Relative to ``_static``; the font (loaded by MathJax as it needs its glyphs) sits beside it.
mathjax_path = "mathjax/tex-mml-chtml.js"
mathjax4_config = {"loader": {"paths": {"fonts": "[mathjax]/fonts"}}}
# What the pages load: the combined TeX + MathML -> CHTML component, the pieces it loads on demand
# (TeX extensions, accessibility, speech, menu) and the font's CHTML data and woff2 files; not the
# other components, the SVG font or the Node.js builds.
_MATHJAX_FILES = {
    "mathjax": ["tex-mml-chtml.js", "a11y", "input", "output", "sre", "ui"],
    "@mathjax/mathjax-newcm-font": ["chtml.js", "chtml"],
}


def _installed_version(package: pathlib.Path) -> str | None:
    manifest = package / "package.json"
    return json.loads(manifest.read_text())["version"] if manifest.exists() else None


def install_mathjax(app) -> None:
    """``npm ci`` the pinned MathJax into ``docs/node_modules`` unless it is there already."""
    if _installed_version(NODE_MODULES / "mathjax") == MATHJAX_VERSION:
        return
    npm = shutil.which("npm")
    if npm is None:
        raise ConfigError(
            "the docs serve MathJax from the built site and install it with npm: install "
            "Node.js and npm (Debian: apt-get install npm), then build again"
        )
    subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=DOCS, check=True)


def copy_mathjax(app, exception) -> None:
    """MathJax and its font into the output's ``_static/mathjax``, where the pages load them."""
    if exception is not None or app.builder.format != "html":
        return
    target = pathlib.Path(app.outdir) / "_static" / "mathjax"
    for package, names in _MATHJAX_FILES.items():
        into = target if package == "mathjax" else target / "fonts" / package.split("/")[1]
        for name in names:
            source = NODE_MODULES / package / name
            if source.is_dir():
                shutil.copytree(source, into / name, dirs_exist_ok=True)
            else:
                into.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, into / name)


def setup(app):
    app.connect("builder-inited", install_mathjax)
    app.connect("build-finished", copy_mathjax)
