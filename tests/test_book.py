"""The book builds in the smoke profile: every chapter executes, and the pages exist."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "_build" / "smoke"   # kept between runs, so an unchanged chapter is not executed again


def toc_files():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [c["file"] for c in part["chapters"]]
    return files


def test_toc_lists_every_chapter_lab_and_solution():
    files = toc_files()
    for kind in ("labs", "solutions"):
        for nb in (ROOT / kind).glob("*.ipynb"):
            assert f"{kind}/{nb.stem}" in files, f"{kind}/{nb.name} is not in _toc.yml"
    for page in (ROOT / "book").glob("*.md"):
        assert f"book/{page.stem}" in files, f"book/{page.name} is not in _toc.yml"


@pytest.mark.notebook
def test_book_builds_in_smoke_profile():
    env = {**os.environ, "UNSUPLAB_PROFILE": "smoke", "UNSUPLAB_PROGRESS": "0"}
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(OUT)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    log = proc.stdout[-6000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, log
    html = OUT / "_build" / "html"
    for page in toc_files():
        assert (html / f"{page}.html").exists(), f"{page}.html was not built\n{log}"
    chapter = (html / "book" / "01_baselines.html").read_text()
    assert "<img" in chapter, "chapter 1 shows no figure: were its cells executed?"
    assert "Traceback" not in chapter and "glue" not in chapter.lower().replace("glue:", "")
    assert "linear probe" in chapter and "%" in chapter
    results = (html / "book" / "results.html").read_text()
    assert "01_baselines" in results
