"""Launch buttons (Colab, and any other launcher) only on pages that are notebooks.

sphinx-book-theme (``header_buttons/launch.py``) gives launch buttons to every page whose metadata
holds a ``kernelspec``: that includes the chapters, which are executable MyST markdown (``book/*.md``),
and their buttons would open a ``.md`` file, which Colab cannot run. Jupyter Book 1.x has no per-page
setting for this, so this extension removes the theme's launch group from every page whose source is
not an ``.ipynb``; lab and solution pages keep theirs, which open their own notebook.
"""

from __future__ import annotations

LAUNCH_GROUP = "launch-buttons"  # the label sphinx-book-theme gives its group of launch links


def keep_launch_buttons_on_notebooks(app, pagename, templatename, context, doctree) -> None:
    if context.get("page_source_suffix") == ".ipynb":
        return
    buttons = context.get("header_buttons")
    if buttons:
        buttons[:] = [b for b in buttons if b.get("label") != LAUNCH_GROUP]


def setup(app):
    # after the theme adds its launch group (priority 501), before the page template reads the buttons
    app.connect("html-page-context", keep_launch_buttons_on_notebooks, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
