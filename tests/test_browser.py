"""A reader's view of the built book: headless Chromium opens every page served on localhost and
fails on console errors, failed or external requests, missing images, unrendered math and broken
internal links; it saves screenshots of a few pages to _build/smoke/screenshots/.

Chromium is Debian's `chromium` package (`make test`, run as root, installs it with apt-get; where
that is not possible the test is skipped, with the reason); Playwright drives it through its
`executable_path`, so no browser is downloaded.
"""

import functools
import http.server
import os
import re
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest

from test_book import toc_files

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "_build" / "smoke" / "screenshots"
SCREENSHOT_PAGES = ["book/intro", "book/01_baselines", "solutions/01_baselines", "book/glossary"]


def _usable_chromium() -> tuple[str | None, str]:
    """The first Chromium on the PATH that runs (``--version``), or None and why not. Ubuntu's
    ``chromium-browser`` can be a stub that only asks for a snap: it is on the PATH but does not run."""
    reason = ("no Chromium on the PATH: install Debian's `chromium` package (`make test` does it, run as root "
              "where apt-get works)")
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path is None:
            continue
        try:
            done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as error:
            reason = f"{path} does not run ({type(error).__name__}: {error})"
            continue
        if done.returncode == 0 and re.search(r"chrom", done.stdout, re.IGNORECASE):
            return path, ""
        reason = f"{path} does not run ({(done.stdout + done.stderr).strip()[:200] or done.returncode})"
    return None, reason


CHROMIUM, NO_CHROMIUM = _usable_chromium()


def test_make_test_goes_on_when_chromium_cannot_be_installed(tmp_path):
    """`make browser` (a step of `make test`) as root with an apt-get that fails: a note, not a failure."""
    make = shutil.which("make")
    if make is None or not Path("/bin/bash").exists():
        pytest.skip("needs make and /bin/bash")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "apt-get").write_text(f"#!/bin/bash\necho \"$@\" >> {tmp_path / 'apt-calls'}\nexit 100\n")
    (fake / "id").write_text("#!/bin/bash\necho 0\n")  # as root
    for tool in fake.iterdir():
        tool.chmod(0o755)
    env = {"PATH": str(fake), "HOME": str(tmp_path)}  # no Chromium anywhere on this PATH
    done = subprocess.run([make, "-s", "-C", str(ROOT), "browser"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert (tmp_path / "apt-calls").read_text().startswith("update")  # it did try
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tests/test_browser.py will be skipped" in done.stdout


@pytest.fixture(scope="module")
def server(book_build):
    assert book_build.returncode == 0, "the book did not build: see test_book.py"
    handler = functools.partial(_QuietHandler, directory=str(book_build.html))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output readable
        pass


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def _visit(browser, url: str, screenshot: Path | None = None) -> dict:
    """Open ``url``; return what went wrong on the page, and the local links it holds."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    host = urllib.parse.urlparse(url).netloc

    def route(r):
        if urllib.parse.urlparse(r.request.url).netloc in (host, "") or r.request.url.startswith("data:"):
            r.continue_()
        else:  # the static book must work with no network
            problems.append(f"external request {r.request.url}")
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status} for {r.url}")
            if r.status >= 400 and urllib.parse.urlparse(r.url).netloc == host else None)
    page.goto(url, wait_until="load", timeout=90_000)
    # MathJax typesets after load; then wait for the images and the fonts themselves (not for
    # "network idle", a heuristic that can time out on a busy machine with nothing pending)
    page.wait_for_function("() => !window.MathJax || !window.MathJax.startup || window.MathJax.startup.promise",
                           timeout=60_000)
    page.evaluate("() => window.MathJax && window.MathJax.startup ? window.MathJax.startup.promise : null")
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)", timeout=60_000)
    page.evaluate("() => document.fonts.ready.then(() => true)")
    broken_images = page.evaluate(
        "() => Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src)")
    problems += [f"image did not load: {src}" for src in broken_images]
    math = page.evaluate("""() => {
        const nodes = Array.from(document.querySelectorAll('.math'));
        return {total: nodes.length,
                unrendered: nodes.filter(n => !n.querySelector('mjx-container') && !n.matches('mjx-container'))
                                 .map(n => n.textContent.slice(0, 60)),
                errors: Array.from(document.querySelectorAll('mjx-merror')).map(n => n.getAttribute('data-mjx-error') || n.textContent)};
    }""")
    problems += [f"math not rendered: {text!r}" for text in math["unrendered"]]
    problems += [f"math error: {text}" for text in math["errors"]]
    links = page.evaluate("() => Array.from(document.querySelectorAll('a[href]')).map(a => a.href)")
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=False)
    page.close()
    local = [link for link in links if urllib.parse.urlparse(link).netloc == host]
    return {"problems": problems, "links": local, "math": math["total"]}


@pytest.mark.notebook
@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_every_page_renders_cleanly_in_chromium(server, browser, book_build):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = toc_files() + ["genindex"]
    report, links, math_pages = {}, set(), 0
    for page in pages:
        shot = SCREENSHOTS / (page.replace("/", "_") + ".png") if page in SCREENSHOT_PAGES else None
        seen = _visit(browser, f"{server}/{page}.html", shot)
        if seen["problems"]:
            report[page] = seen["problems"]
        links.update(seen["links"])
        math_pages += seen["math"] > 0
    assert not report, "pages with problems:\n" + "\n".join(
        f"{page}:\n  " + "\n  ".join(problems[:15]) for page, problems in report.items())
    assert math_pages >= 3, "expected rendered math on several pages"
    for page in SCREENSHOT_PAGES:
        assert (SCREENSHOTS / (page.replace("/", "_") + ".png")).stat().st_size > 10_000

    # every internal link points at a file that exists, and at an anchor that exists in it
    html = book_build.html
    broken = []
    anchors: dict[Path, set[str]] = {}
    for link in sorted(links):
        parsed = urllib.parse.urlparse(link)
        target = html / urllib.parse.unquote(parsed.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            broken.append(f"{link}: no such file")
            continue
        if parsed.fragment and target.suffix == ".html":
            if target not in anchors:
                anchors[target] = set(re.findall(r'\bid="([^"]+)"', target.read_text(errors="replace")))
            if urllib.parse.unquote(parsed.fragment) not in anchors[target]:
                broken.append(f"{link}: no anchor #{parsed.fragment}")
    assert not broken, "broken internal links:\n" + "\n".join(broken[:30])
