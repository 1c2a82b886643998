"""Every public docstring in unsuplab is valid reStructuredText after napoleon, as the API page needs.

The book build (tests/test_book.py) finds the same problems, but only after minutes of notebook
execution; this runs in seconds and names the object at fault.
"""
import importlib
import inspect
import io
import pkgutil

import pytest

docutils_core = pytest.importorskip("docutils.core")
napoleon = pytest.importorskip("sphinx.ext.napoleon")
from sphinx.ext.napoleon.docstring import GoogleDocstring, NumpyDocstring  # noqa: E402

import unsuplab  # noqa: E402

# Sphinx roles and directives (:func:, .. attribute::) are unknown to bare docutils; everything else counts.
SPHINX_ONLY = ("Unknown interpreted text role", "Unknown directive type", "No role entry", "No directive entry",
               "Trying", "as canonical")


def _public_objects():
    names = ["unsuplab"] + [m.name for m in pkgutil.walk_packages(unsuplab.__path__, "unsuplab.")]
    for name in names:
        module = importlib.import_module(name)
        yield name, module
        for attr, obj in vars(module).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            yield f"{name}.{attr}", obj
            if inspect.isclass(obj):
                for member, value in vars(obj).items():
                    if not member.startswith("_") and (inspect.isfunction(value) or isinstance(value, property)):
                        yield f"{name}.{attr}.{member}", value


def _rst_problems(doc: str) -> list[str]:
    config = napoleon.Config(napoleon_use_param=True, napoleon_use_rtype=True)
    text = str(GoogleDocstring(str(NumpyDocstring(doc, config)), config))
    stream = io.StringIO()
    docutils_core.publish_doctree(text, settings_overrides={"warning_stream": stream, "report_level": 2})
    messages = [line for line in stream.getvalue().splitlines() if "(ERROR/" in line or "(WARNING/" in line
                or "(SEVERE/" in line]
    return [m for m in messages if not any(s in m for s in SPHINX_ONLY)]


def test_docstrings_are_valid_restructuredtext():
    bad = {}
    for name, obj in _public_objects():
        doc = inspect.getdoc(obj)
        if doc and (problems := _rst_problems(doc)):
            bad[name] = problems
    assert not bad, "docstrings the API page cannot render (use ``...`` around |x|, *x, _x):\n" + "\n".join(
        f"{name}: {'; '.join(problems)}" for name, problems in bad.items())


def test_the_checker_catches_a_broken_docstring():
    assert _rst_problems("The L1 norm sum_j |h_j| of the code.")
    assert not _rst_problems("The L1 norm sum_j ``|h_j|`` of the code.")
