"""The book builds in the smoke profile without a single warning: every chapter executes, every
page of the table of contents exists, and no reference, citation or link is broken."""

import re
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
    modules = [p for p in (ROOT / "unsuplab").rglob("*.py") if p.name != "__init__.py" and p.name != "__main__.py"]
    for path in modules:
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        assert f"automodule:: {dotted}" in api, f"book/api.md does not document {dotted}"


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
                 "07_self_supervised", "08_word2vec", "08_bert", "09_unsupervised_translation"):
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
