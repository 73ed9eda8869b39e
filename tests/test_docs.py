"""Every docstring example in the package runs and prints what it shows; the built site loads
nothing from another site."""

import contextlib
import doctest
import html.parser
import importlib
import io
import pkgutil
import re
import urllib.parse
import warnings

import jax
import pytest
from helpers import IN_CI, REPO, require

import ladam_optax

MODULES = [f"ladam_optax.{m.name}" for m in pkgutil.iter_modules(ladam_optax.__path__)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_public_api_is_documented():
    for name in ladam_optax.__all__:
        obj = getattr(ladam_optax, name)
        if callable(obj):
            assert obj.__doc__ and len(obj.__doc__.strip()) > 40, name


DOCS = REPO / "docs"


def _blocks(page: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", (DOCS / page).read_text(), flags=re.DOTALL)


def _pages_with(language: str) -> list[str]:
    return [p.name for p in sorted(DOCS.glob("*.md")) if _blocks(p.name, language)]


def _is_fold(x) -> bool:
    return isinstance(x, ladam_optax.Fold)


def _check_equinox(namespace: dict, printed: str) -> None:
    """The Equinox guide's claims: every optimizer trains the CNN; ``torch_folds`` finds no
    Flax leaf in an Equinox model; ``line_biases`` folds exactly the conv biases."""
    eqx = require("equinox", "for the Equinox guide")
    accuracies = [float(a) for a in re.findall(r"test accuracy (\S+)", printed)]
    assert len(accuracies) == 4 and min(accuracies) > 0.85, printed  # chance is 0.1
    params = eqx.filter(namespace["CNN"](jax.random.key(0)), eqx.is_inexact_array)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it may warn that it recognises no leaf
        folds = ladam_optax.torch_folds(params)
    assert not [f for f in jax.tree.leaves(folds, is_leaf=_is_fold) if _is_fold(f)]
    lines = jax.tree_util.tree_leaves_with_path(namespace["line_biases"](params), is_leaf=_is_fold)
    assert [(jax.tree_util.keystr(path), fold) for path, fold in lines] == [
        (".conv1.bias", ladam_optax.Fold(rows=(0, 1, 2), cols=())),
        (".conv2.bias", ladam_optax.Fold(rows=(0, 1, 2), cols=())),
    ]


PAGE_CHECKS = {"equinox.md": _check_equinox}


@pytest.mark.parametrize("page", _pages_with("python"))
def test_guide_programs_run(page):
    """```python blocks in the guides are complete programs (```py blocks are fragments)."""
    if page == "equinox.md":
        require("equinox", "for the Equinox guide")
    for block in _blocks(page, "python"):
        namespace, printed = {}, io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(block, page, "exec"), namespace)
        if page in PAGE_CHECKS:
            PAGE_CHECKS[page](namespace, printed.getvalue())


@pytest.mark.parametrize("page", _pages_with("pycon"))
def test_guide_sessions_print_what_they_show(page):
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for i, block in enumerate(_blocks(page, "pycon")):
        runner.run(doctest.DocTestParser().get_doctest(block, {}, f"{page}:{i}", page, 0))
    assert runner.summarize(verbose=False).failed == 0


BUILD = DOCS / "_build"


class _Assets(html.parser.HTMLParser):
    """The scripts and stylesheets a page loads."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script" and attrs.get("src"):
            self.urls.append(attrs["src"])
        if tag == "link" and attrs.get("rel") == "stylesheet" and attrs.get("href"):
            self.urls.append(attrs["href"])


def test_built_pages_load_nothing_remote():
    # CI builds the docs (sphinx-build -W -q -b html docs docs/_build) before the tests.
    pages = sorted(BUILD.rglob("*.html"))
    if not pages:
        message = "docs not built: sphinx-build -W -q -b html docs docs/_build"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    mathjax = 0
    for page in pages:
        assets = _Assets()
        assets.feed(page.read_text())
        for url in assets.urls:
            parts = urllib.parse.urlsplit(url)
            where = f"{page.relative_to(BUILD)} loads {url}"
            assert not parts.scheme and not parts.netloc, where
            assert (page.parent / parts.path).resolve().is_file(), where
            mathjax += parts.path.endswith("mathjax/tex-mml-chtml.js")
    assert mathjax > 0  # the pages with math load the site's own MathJax
    font = BUILD / "_static" / "mathjax" / "fonts" / "mathjax-newcm-font" / "chtml.js"
    assert font.is_file()
