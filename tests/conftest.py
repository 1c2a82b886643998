"""Shared fixtures: the book is built once per test session, in the smoke profile, and both the
build checks (tests/test_book.py) and the browser test (tests/test_browser.py) read that build."""

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK_OUT = ROOT / "_build" / "smoke"  # kept between runs, so an unchanged chapter is not executed again


@dataclass
class BookBuild:
    returncode: int
    log: str
    seconds: float
    html: Path


@pytest.fixture(scope="session")
def book_build() -> BookBuild:
    env = {**os.environ, "UNSUPLAB_PROFILE": "smoke", "UNSUPLAB_PROGRESS": "0"}
    jb = Path(sys.executable).with_name("jupyter-book")
    started = time.perf_counter()
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(BOOK_OUT)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=2400)
    return BookBuild(proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - started,
                     BOOK_OUT / "_build" / "html")
