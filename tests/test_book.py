"""The book builds in the smoke profile without a single warning: every chapter executes, every
page of the table of contents exists, and no reference, citation or link is broken."""

import importlib
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries:
            files.append(entry["file"])
            walk(entry.get("sections", []))

    for part in toc["parts"]:
        walk(part["chapters"])
    return files


def test_toc_lists_every_chapter_lab_and_solution():
    files = toc_files()
    for kind in ("labs", "solutions"):
        for nb in (ROOT / kind).glob("*.ipynb"):
            assert f"{kind}/{nb.stem}" in files, f"{kind}/{nb.name} is not in _toc.yml"
    for page in (ROOT / "book").glob("*.md"):
        assert f"book/{page.stem}" in files, f"book/{page.name} is not in _toc.yml"


def test_api_reference_covers_every_module():
    api = (ROOT / "book" / "api.md").read_text()
    documented = set(re.findall(r"automodule:: ([\w.]+)", api))
    modules = [p for p in (ROOT / "unsuplab").rglob("*.py") if p.name != "__init__.py" and p.name != "__main__.py"]
    for path in modules:
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        package = dotted.rpartition(".")[0]
        if dotted not in documented and package in documented and package != "unsuplab":
            # a module of a package that gives all its names (unsuplab.data.store): shown by the package's entry
            module, parent = importlib.import_module(dotted), importlib.import_module(package)
            if set(module.__all__) <= set(getattr(parent, "__all__", ())):
                continue
        assert dotted in documented, f"book/api.md does not document {dotted}"


def test_every_citation_key_exists():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M))
    pages = list((ROOT / "book").glob("*.md"))
    cited = set()
    for page in pages:
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", page.read_text()):
            cited.update(k.strip() for k in group.split(","))
    assert cited, "no chapter cites anything"
    assert not cited - keys, f"cited but not in book/references.bib: {sorted(cited - keys)}"


@pytest.mark.notebook
def test_book_builds_in_smoke_profile_without_warnings(book_build):
    log = book_build.log
    assert book_build.returncode == 0, log[-8000:]
    # Sphinx's own warnings ("WARNING: ..."), not the kernels' log lines ("[IPKernelApp] WARNING | ...")
    warnings = [line for line in log.splitlines() if re.search(r"\b(WARNING|ERROR|CRITICAL):", line)]
    assert not warnings, "the book build warned (broken reference, link, citation or cell?):\n" + "\n".join(warnings)
    for page in toc_files():
        assert (book_build.html / f"{page}.html").exists(), f"{page}.html was not built\n{log[-4000:]}"
    print(f"book built in {book_build.seconds:.0f} s")


@pytest.mark.notebook
def test_built_pages_show_executed_results(book_build):
    assert book_build.returncode == 0
    html = book_build.html
    chapter = (html / "book" / "01_baselines.html").read_text()
    figure = re.compile(r'<img[^>]+src="\.\./_images/[^"]+\.png"')
    assert figure.search(chapter), "chapter 1 shows no figure: were its cells executed with a display backend?"
    assert "<table" in chapter, "chapter 1's results table was not rendered as a table"
    assert "Traceback" not in chapter
    assert "linear probe" in chapter and "%" in chapter
    assert 'class="exercise' in chapter and "dropdown" in chapter  # exercises, solutions folded
    results = (html / "book" / "results.html").read_text()
    assert "01_baselines" in results and "LeCun et al. 1998" in results and "<table" in results
    assert "Claims at a glance" in results and "✓" in results and "Known to fail on" in results
    assert "linear_acc_simclr" in results  # the raw metrics, one per row
    for page in ("01_baselines", "02_sparse_coding", "03_rbm_dbn", "04_autoencoders", "05_vae", "06_gan",
                 "07_self_supervised", "07_pretext_tasks", "08_word2vec", "08_bert", "09_unsupervised_translation",
                 "10_open_problems",
                 "10_few_labels"):
        text = (html / "book" / f"{page}.html").read_text()
        assert "Claims checked against the lab" in text and "needs ≥" in text and "✓" in text, \
            f"chapter {page} does not show its claim table"
    intro = (html / "book" / "intro.html").read_text()
    assert "not measured yet" in intro or "CPU:" in intro  # the lab-time table was generated
    solution = (html / "solutions" / "01_baselines.html").read_text()
    assert "tag_hide-input" in solution, "the solution's answer cells are not folded"
    assert len(figure.findall(solution)) >= 4, "the solution page shows too few figures from its committed run"
    bibliography = (html / "book" / "bibliography.html").read_text()
    assert "Olshausen" in bibliography and "Hotelling" in bibliography


# A launch button is a link in the page header whose title says "Launch on Colab" (or Binder, JupyterHub…),
# as sphinx-book-theme's header_buttons/launch.py and its button template write it.
LAUNCH_LINK = re.compile(r'<a\s+href="(?P<href>[^"]+)"[^>]*?title="Launch on (?P<provider>[^"]+)"', re.S)


def launch_links(page: Path) -> list[tuple[str, str]]:
    return [(m["provider"], m["href"]) for m in LAUNCH_LINK.finditer(page.read_text())]


def launch_problems(html: Path) -> list[str]:
    """Every launch button that opens something Colab or Binder cannot run, one sentence each."""
    problems = []
    for page in sorted(html.glob("book/*.html")) + [html / "index.html"]:
        for provider, href in launch_links(page):
            problems.append(f"{page.relative_to(html)} is a chapter, not a notebook, yet has a {provider} button ({href})")
    for kind in ("labs", "solutions"):
        pages = sorted((html / kind).glob("*.html"))
        if not pages:
            problems.append(f"no {kind}/ pages were built")
        for page in pages:
            links = launch_links(page)
            if not any(provider == "Colab" for provider, _ in links):
                problems.append(f"{page.relative_to(html)} has no Colab button")
            for provider, href in links:
                target = href.split("?urlpath=")[-1]
                if not target.endswith(f"{kind}/{page.stem}.ipynb") or "/./" in href:
                    problems.append(f"{page.relative_to(html)}: its {provider} button opens {href}, "
                                    f"not {kind}/{page.stem}.ipynb")
                if provider == "Binder" and not (ROOT / ".binder").is_dir():
                    problems.append(f"{page.relative_to(html)} has a Binder button but the repository has no .binder/")
    return problems


@pytest.mark.notebook
def test_launch_buttons_only_open_notebooks(book_build):
    """No launch button may open a file Colab cannot run: chapters (MyST markdown) get none, and every
    button on a lab or solution page opens that page's own .ipynb."""
    assert book_build.returncode == 0
    problems = launch_problems(book_build.html)
    assert not problems, "\n".join(problems)


def test_launch_config_matches_what_is_offered():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    launch = config.get("launch_buttons", {})
    assert launch.get("colab_url") == "https://colab.research.google.com"
    if launch.get("binderhub_url"):
        assert (ROOT / ".binder").is_dir(), "a Binder button needs a .binder/ configuration"
    if not launch.get("jupyterhub_url"):
        assert "JupyterHub" not in (ROOT / "_config.yml").read_text(), "_config.yml promises a JupyterHub button"
    # path_to_book "." would put "/./" into every launch URL
    assert config["repository"].get("path_to_book", "") == ""


def test_markdown_pages_lose_their_launch_buttons():
    """The book's extension removes the launch group sphinx-book-theme adds to every page with a kernel,
    MyST markdown chapters included, and keeps it on notebook pages."""
    sys.path.insert(0, str(ROOT / "book" / "_ext"))
    try:
        import notebook_launch_buttons as ext
    finally:
        sys.path.pop(0)
    launch = {"label": "launch-buttons", "type": "group", "buttons": [{"text": "Colab"}]}
    download = {"label": "download-buttons", "type": "group", "buttons": []}
    for suffix, kept in ((".md", False), (".ipynb", True)):
        context = {"page_source_suffix": suffix, "header_buttons": [dict(download), dict(launch)]}
        ext.keep_launch_buttons_on_notebooks(None, "p", "page.html", context, None)
        labels = [b["label"] for b in context["header_buttons"]]
        assert ("launch-buttons" in labels) is kept and "download-buttons" in labels, (suffix, labels)
    ext.keep_launch_buttons_on_notebooks(None, "genindex", "genindex.html", {}, None)  # a page with no source
