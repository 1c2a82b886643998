"""Doc comments of constants that a package re-exports from its modules, on the package's API entry.

``unsuplab.data`` gathers ``store``, ``images`` and ``text`` with ``from .x import *``. Sphinx's autodoc
reads a constant's ``#:`` doc comment only from the source of the module it documents, which for
``.. automodule:: unsuplab.data`` is the package's ``__init__``: ``TEXT8``, ``CORPORA``, ``SPRITE_FACTORS``
and the others would count as undocumented there and vanish from the API page. Before autodoc reads
anything, this extension hands the package's source analysis the comments of the modules that define
them, so the public name (``unsuplab.data.TEXT8``) is the one documented and linked.
"""

from __future__ import annotations

import importlib

from sphinx.pycode import ModuleAnalyzer

PACKAGES = ("unsuplab.data",)


def _submodules(package) -> list:
    """The modules of ``package`` that it imports and that declare ``__all__``."""
    return [value for value in vars(package).values()
            if getattr(value, "__name__", "").startswith(package.__name__ + ".") and hasattr(value, "__all__")]


def lend_comments(app) -> None:
    """Add to each package's (cached) source analysis the doc comments of the constants it re-exports."""
    for name in PACKAGES:
        package = importlib.import_module(name)
        analyzer = ModuleAnalyzer.for_module(name)
        analyzer.analyze()
        order = max(analyzer.tagorder.values(), default=0)
        for module in _submodules(package):
            for (namespace, attr), comment in ModuleAnalyzer.for_module(module.__name__).find_attr_docs().items():
                if namespace == "" and attr in package.__all__ and ("", attr) not in analyzer.attr_docs:
                    analyzer.attr_docs[("", attr)] = comment
                    order += 1
                    analyzer.tagorder.setdefault(attr, order)


def setup(app):
    app.connect("builder-inited", lend_comments)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
