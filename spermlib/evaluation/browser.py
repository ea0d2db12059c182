"""A headless Streamlit server of the dashboard and Debian's Chromium to drive it (Playwright).

``streamlit_server`` starts ``streamlit run app.py`` on a free port and stops it; ``launch`` opens
``/usr/bin/chromium`` headless through Playwright (its own browser download is not needed); ``settle`` waits
until a page's script has finished. The speed benchmark's browser rows (``evaluation.bench``), the screenshot
tour (``tools/screenshots.py``) and the end-to-end tests drive the dashboard with these. Playwright is
imported by the caller (``sync_playwright``), never here: this module imports without it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlencode

from spermlib.data.datasets import PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--hide-scrollbars"]
SERVER_START_S = 90
PAGE_LOAD_MS = 600_000  # the first visit may embed every image of the full data set
IDLE = "[data-testid='stApp'][data-test-script-state='notRunning']"


class ServerError(RuntimeError):
    """The Streamlit server did not start or died."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_server(env: Mapping[str, str | None], log_path: Path) -> Iterator[str]:
    """A headless ``streamlit run app.py`` on a free port with ``env`` applied to this process's
    environment (``None`` unsets a variable); yields its base URL and stops it (by its pid) on exit."""
    port = free_port()
    full_env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    for key, value in env.items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
            cwd=PROJECT_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            _wait_healthy(proc, base, log_path)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)


def _wait_healthy(proc: subprocess.Popen, base: str, log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while True:
        if proc.poll() is not None:
            raise ServerError(f"streamlit exited with {proc.returncode}; see {log_path}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=5) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise ServerError(f"streamlit did not answer within {SERVER_START_S} s; see {log_path}")
        time.sleep(0.5)


def launch(playwright):
    """Debian's Chromium, headless."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)


def settle(page, timeout_ms: int = PAGE_LOAD_MS) -> None:
    """Wait until the script has finished (twice, a moment apart: a widget change starts a rerun a
    little after the click), no spinner is left and the images have loaded."""
    for _ in range(2):
        page.wait_for_selector(IDLE, timeout=timeout_ms)
        page.wait_for_timeout(800)
    page.wait_for_function("() => !document.querySelector('[data-testid=stSpinner]')", timeout=timeout_ms)
    page.wait_for_function("() => [...document.images].every(i => i.complete)", timeout=60_000)
    page.wait_for_timeout(700)  # plotly's resize after the last layout change


def open_page(page, base: str, path: str, timeout_ms: int = PAGE_LOAD_MS) -> None:
    page.goto(f"{base}/{path}", wait_until="domcontentloaded", timeout=60_000)
    settle(page, timeout_ms)



def classify_url(samples: list[str], dataset: str = "smids", arch: str = "all") -> str:
    """The Classify page's URL with ``samples`` (bundled sample paths) picked for ``dataset`` and ``arch``."""
    return "classify?" + urlencode([("dataset", dataset), ("arch", arch), *(("sample", s) for s in samples)])
