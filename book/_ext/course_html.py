"""Small fixes that make the static book work offline and keep the browser console clean.

* The notebooks' "Open in Colab" badge is an image on colab.research.google.com: right in Colab and on
  GitHub, but a network request (and a broken image offline) in the book. The book shows its own copy,
  ``book/images/colab-badge.svg``; the link itself is unchanged.
* Two extensions register the same inline Thebe configuration script, and a second ``const`` of the
  same name is a JavaScript error on every page: scripts repeated on a page are dropped.
* pydata-sphinx-theme logs an error on a reader's first visit (no saved light/dark mode yet): the mode
  starts as ``auto`` instead.
"""

from __future__ import annotations

from docutils import nodes

COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "/book/images/colab-badge.svg"  # relative to the book's source root
THEME_MODE_FIX = ("if (!localStorage.getItem('mode')) { localStorage.setItem('mode', 'auto'); }\n"
                  "if (!document.documentElement.dataset.mode) { document.documentElement.dataset.mode = 'auto'; }")


def _local_badge(app, doctree) -> None:
    for image in doctree.findall(nodes.image):
        if image.get("uri") == COLAB_BADGE:
            image["uri"] = LOCAL_BADGE


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in sorted(scripts, key=lambda js: getattr(js, "priority", 500)):  # the earliest copy wins
        key = (str(getattr(script, "filename", script) or ""),  # an inline script: None or ''
               tuple(sorted((k, str(v)) for k, v in getattr(script, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept


def setup(app):
    # before Sphinx's image collector (priority 500) reads the URI and copies the file
    app.connect("doctree-read", _local_badge, priority=100)
    app.connect("html-page-context", _dedupe_scripts, priority=900)
    app.add_js_file(None, body=THEME_MODE_FIX, priority=1)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
