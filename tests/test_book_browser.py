"""Open every page of the built book in headless Chromium: it renders, its figures load, its links resolve.

How, and why this way: one Debian `chromium` process is driven over the DevTools protocol on a pipe
(`--remote-debugging-pipe`): no TCP port, no extra Python package, and the checks run *inside* the
rendered page, so "the figure loaded" means the browser decoded it (`naturalWidth > 0`), not merely that
a file exists. `_build/html` is served by `http.server` on 127.0.0.1 and the server logs every request,
so any 4xx for a stylesheet, script or image a page asked for is caught too. Internal links are taken
from the live DOM and checked against the files (and `#fragment` ids) of the build. Screenshots of four
pages are saved to `_build/screenshots/` for a person to look at. What a reader must not see is checked in the
rendered text (hidden cells excluded): epoch timestamps, the build machine's absolute paths, `assert` lines, and
tables wider than the page.

The book is built first when `_build/html/index.html` is missing (that executes every notebook).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from base64 import b64decode
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("KINDLAB_BOOK_HTML", ROOT / "_build" / "html"))
SHOTS = ROOT / "_build" / "screenshots"
SCREENSHOT_PAGES = ("notebooks/04-iptables.html", "notebooks/05-worker2.html",
                    "notebooks/07-self-healing-latency.html", "notebooks/08-troubleshooting.html")
# Figures each notebook page must show (matplotlib PNGs in cell outputs).
MIN_FIGURES = {"notebooks/00-problem.html": 1, "notebooks/04-iptables.html": 1,
               "notebooks/05-worker2.html": 1, "notebooks/07-self-healing-latency.html": 1,
               "notebooks/10-measurement.html": 1}
# What a reader must not see on any page: the machinery's epoch timestamps (seconds since 1970, 2020-2033),
# absolute paths of the machine that built the book, and the notebooks' `assert` lines (their cells are hidden).
EPOCH = re.compile(r"(?<![\w.:/-])1[6-9]\d{8}(?:\.\d+)?(?![\w.:/-])")
MACHINE_PATHS = re.compile("|".join([re.escape(str(ROOT)), re.escape(str(HTML.parent.parent)),
                                     r"/tmp/(?:tmp|kindlab-)\S*", r"/root/\S*", r"/home/\w+"]))
ASSERT_LINE = re.compile(r"^\s*assert\b", re.M)
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                  "--remote-debugging-pipe"]
LOAD_TIMEOUT = 30.0

PAGE_CHECK = """
(async () => {
  const imgs = Array.from(document.images);
  imgs.forEach(i => { i.loading = "eager"; });
  await Promise.all(imgs.map(i => i.complete ? null :
    new Promise(r => { i.addEventListener("load", r); i.addEventListener("error", r); setTimeout(r, 10000); })));
  const main = document.querySelector("main, article, [role=main]");
  const article = document.querySelector("article") || main;
  const width = article ? article.getBoundingClientRect().width : window.innerWidth;
  return {
    title: document.title,
    text: main ? main.innerText.length : 0,
    visible: article ? article.innerText : "",
    wide_tables: Array.from((article || document).querySelectorAll("table"))
      .filter(t => t.getBoundingClientRect().width > width + 1)
      .map(t => `${Math.round(t.getBoundingClientRect().width)} px > ${Math.round(width)} px: ` +
                (t.innerText || "").slice(0, 60)),
    images: imgs.map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0,
                            w: i.naturalWidth, figure: /_images\\//.test(i.src) || i.src.startsWith("data:image")})),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
  };
})()
"""


# -- a tiny DevTools-protocol client over the pipe --------------------------------------------------
class Chromium:
    """Headless Chromium driven over --remote-debugging-pipe (fd 3: commands in, fd 4: replies out)."""

    def __init__(self, binary: str, profile: Path):
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_fds() -> None:  # in the child, before exec: our pipe ends become its fds 3 and 4
            high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_chrome_r, from_chrome_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        # close_fds=False: fds 3 and 4 are made after the point where subprocess would close them; every
        # other fd Python opened is non-inheritable anyway.
        self.proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=wire_fds, close_fds=False)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next_id = 0
        self._replies: dict[int, queue.Queue] = {}
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True, name="chromium-pipe").start()

    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._from_chrome, "rb", buffering=0) as pipe:
            while chunk := pipe.read(1 << 16):
                buf += chunk
                while b"\0" in buf:
                    raw, buf = buf.split(b"\0", 1)
                    msg = json.loads(raw)
                    if "id" in msg and msg["id"] in self._replies:
                        self._replies[msg["id"]].put(msg)
                    else:
                        self.events.put(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = LOAD_TIMEOUT) -> dict[str, Any]:
        """Send one command and wait for its reply; raise on a protocol error."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            self._replies[ident] = queue.Queue()
            msg = {"id": ident, "method": method, "params": params or {}}
            if session:
                msg["sessionId"] = session
            os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        try:
            reply = self._replies[ident].get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"chromium did not answer {method} in {timeout:g}s") from None
        finally:
            self._replies.pop(ident, None)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, session: str, timeout: float = LOAD_TIMEOUT) -> dict[str, Any]:
        """The next event `method` of `session` (other events are kept in `self.seen`)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = self.events.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(msg)
            if msg.get("method") == method and msg.get("sessionId") == session:
                return msg
        raise TimeoutError(f"no {method} within {timeout:g}s")

    def drain(self) -> list[dict[str, Any]]:
        """Move the events received so far into `self.seen`; returns `self.seen`."""
        while True:
            try:
                self.seen.append(self.events.get_nowait())
            except queue.Empty:
                return self.seen

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)


# -- serving the book ---------------------------------------------------------------------------
class _Handler(SimpleHTTPRequestHandler):
    log: list[tuple[str, int]] = []

    def log_message(self, format: str, *args: Any) -> None:  # quiet; requests are recorded instead
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        type(self).log.append((unquote(urlsplit(self.path).path), int(code) if str(code).isdigit() else 0))


def _serve(folder: Path) -> tuple[ThreadingHTTPServer, list[tuple[str, int]]]:
    log: list[tuple[str, int]] = []
    handler = type("BookHandler", (_Handler,), {"log": log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True, name="book-http").start()
    return server, log


def _build_book() -> None:
    jb = Path(sys.executable).with_name("jupyter-book")
    subprocess.run([str(jb), "build", str(ROOT), "--builder", "html", "--warningiserror", "--keep-going"],
                   cwd=ROOT, check=True, timeout=1800)


def _ids(page: Path, cache: dict[Path, set[str]]) -> set[str]:
    if page not in cache:
        cache[page] = set(re.findall(r"""\b(?:id|name)=["']([^"']+)["']""", page.read_text(errors="replace")))
    return cache[page]


def _pages(folder: Path) -> list[str]:
    skip = ("_static/", "_sources/", "_images/", "_downloads/")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.html")
                  if not str(p.relative_to(folder)).startswith(skip))


# -- the one browser session all checks share ---------------------------------------------------
@pytest.fixture(scope="module")
def book() -> dict[str, Any]:
    """Visit every page once; per page: title, text length, images, links, failed requests, JS errors."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if not binary:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    if not (HTML / "index.html").exists():
        _build_book()
    server, log = _serve(HTML)
    origin = f"http://127.0.0.1:{server.server_address[1]}"
    profile = Path(tempfile.mkdtemp(prefix="kindlab-chromium-"))
    browser = Chromium(binary, profile)
    results: dict[str, Any] = {}
    try:
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime"):
            browser.send(f"{domain}.enable", session=session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        SHOTS.mkdir(parents=True, exist_ok=True)
        for page in _pages(HTML):
            browser.seen = []
            start = len(log)
            browser.send("Page.navigate", {"url": f"{origin}/{page}"}, session=session)
            browser.wait_event("Page.loadEventFired", session)
            check = browser.send("Runtime.evaluate", {"expression": PAGE_CHECK, "awaitPromise": True,
                                                      "returnByValue": True}, session=session)
            value = check["result"].get("value") or {}
            errors = [m["params"]["exceptionDetails"].get("text", "") + " " +
                      str(m["params"]["exceptionDetails"].get("exception", {}).get("description", ""))
                      for m in browser.drain() if m.get("method") == "Runtime.exceptionThrown"]
            failed = [(path, code) for path, code in log[start:] if code >= 400 and not path.endswith("favicon.ico")]
            results[page] = {**value, "failed_requests": failed, "js_errors": errors}
            if page in SCREENSHOT_PAGES:
                size = browser.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
                clip = {"x": 0, "y": 0, "width": 1280, "height": min(int(size["height"]), 7000), "scale": 1}
                shot = browser.send("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                               "captureBeyondViewport": True}, session=session)
                (SHOTS / Path(page).with_suffix(".png").name).write_bytes(b64decode(shot["data"]))
    finally:
        browser.close()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    return {"origin": origin, "pages": results}


def test_every_page_renders(book):
    pages = dict(book["pages"])
    assert "index.html" in pages and len(pages) >= 12, sorted(pages)
    # index.html is Jupyter Book's redirect to the root page; it must point at a page that exists.
    redirect = re.search(r'url=([^"\']+)', (HTML / "index.html").read_text())
    assert redirect and (HTML / redirect.group(1)).exists(), redirect
    pages.pop("index.html")
    blank = [p for p, r in pages.items() if not r.get("title") or (r.get("text", 0) < 200 and p != "search.html")]
    assert not blank, f"pages that rendered no content: {blank}"
    js = {p: r["js_errors"] for p, r in pages.items() if r["js_errors"]}
    assert not js, f"JavaScript errors: {js}"


def test_no_broken_images_or_resources(book):
    broken = {p: [i["src"] for i in r["images"] if not i["ok"]] for p, r in book["pages"].items()}
    broken = {p: srcs for p, srcs in broken.items() if srcs}
    assert not broken, f"images that did not load: {broken}"
    failed = {p: r["failed_requests"] for p, r in book["pages"].items() if r["failed_requests"]}
    assert not failed, f"requests that failed: {failed}"


def test_notebook_pages_show_their_figures(book):
    for page, least in MIN_FIGURES.items():
        figures = [i for i in book["pages"][page]["images"] if i["figure"] and i["ok"]]
        assert len(figures) >= least, f"{page}: {len(figures)} figures, expected at least {least}"


def test_no_broken_internal_links(book):
    origin, cache, broken = book["origin"], {}, []
    for page, r in book["pages"].items():
        for href in r["links"]:
            url = urlsplit(href)
            if f"{url.scheme}://{url.netloc}" != origin:
                continue
            path = unquote(url.path).lstrip("/") or "index.html"
            target = HTML / path
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append((page, href))
            elif url.fragment and target.suffix == ".html" and unquote(url.fragment) not in _ids(target, cache):
                broken.append((page, href))
    assert not broken, f"broken internal links: {broken}"


def test_screenshots_were_taken(book):
    for page in SCREENSHOT_PAGES:
        shot = SHOTS / Path(page).with_suffix(".png").name
        assert shot.exists() and shot.stat().st_size > 20_000, shot


def _visible(book, pattern: re.Pattern) -> dict[str, list[str]]:
    """Per page, the distinct matches of `pattern` in the rendered text a reader sees (hidden cells excluded)."""
    found = {p: sorted(set(pattern.findall(r.get("visible", "")))) for p, r in book["pages"].items()}
    return {p: hits[:5] for p, hits in found.items() if hits}


def test_no_epoch_timestamps(book):
    assert not _visible(book, EPOCH), f"epoch timestamps on pages: {_visible(book, EPOCH)}"


def test_no_absolute_machine_paths(book):
    assert not _visible(book, MACHINE_PATHS), f"the build machine's paths on pages: {_visible(book, MACHINE_PATHS)}"


def test_no_visible_assert_lines(book):
    shown = {p: [line.strip() for line in r.get("visible", "").splitlines() if ASSERT_LINE.match(line)][:3]
             for p, r in book["pages"].items()}
    shown = {p: lines for p, lines in shown.items() if lines}
    assert not shown, f"assert lines a reader sees: {shown}"


def test_no_table_wider_than_the_page(book):
    wide = {p: r["wide_tables"] for p, r in book["pages"].items() if r.get("wide_tables")}
    assert not wide, f"tables wider than the page: {wide}"


def test_patterns_catch_what_they_look_for():
    """The checks above would fire: an epoch, the repository's path, a temporary folder, an assert line."""
    assert EPOCH.search("fix_at 1796601334.03") and not EPOCH.search("HTTP 200 in 1.25 s, port 8080")
    assert MACHINE_PATHS.search(f"cp portmap {ROOT}/kind/empty/bin/")
    assert MACHINE_PATHS.search("--kubeconfig /tmp/tmpab12cd/kubeconfig")
    assert not MACHINE_PATHS.search("cp portmap kind/empty/bin/ ; sudo cp /opt/cni/bin/portmap /tmp/empty/bin/")
    assert ASSERT_LINE.search("x = 1\n    assert x == 1") and not ASSERT_LINE.search("# we assert nothing")
