"""A page opened in a real headless Chromium, driven over the DevTools protocol on a pipe (stdlib only).

``open_page(path)`` loads a file:// page and returns a :class:`Page` that evaluates JavaScript and takes
screenshots; everything the page logs as an error (uncaught exceptions, console.error, resources that
failed to load) is collected in ``Page.errors``.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TIMEOUT = 60.0


def chromium_path() -> str | None:
    """The Chromium to drive: $STORYREEL_CHROMIUM, else the first of the usual names on PATH."""
    chosen = os.environ.get("STORYREEL_CHROMIUM")
    if chosen:
        return chosen
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Page:
    """One tab, attached with a flat session: commands are sent as JSON, NUL-terminated, on the pipe."""

    def __init__(self, to_browser: int, from_browser: int):
        self.to_browser = to_browser
        self.from_browser = from_browser
        self.buffer = b""
        self.next_id = 0
        self.session: str | None = None
        self.events: list[dict[str, Any]] = []
        self.errors: list[str] = []

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("Chromium did not answer in time")
            ready, _, _ = select.select([self.from_browser], [], [], left)
            if ready:
                chunk = os.read(self.from_browser, 1 << 20)
                if not chunk:
                    raise ConnectionError("Chromium closed the DevTools pipe")
                self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self._event(message)
        return message

    def _event(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        method, params = message["method"], message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(
                details.get("exception", {}).get("description") or details.get("text", "exception")
            )
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(
                " ".join(str(arg.get("value", arg.get("description"))) for arg in params["args"])
            )
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"{entry.get('text')} {entry.get('url', '')}".strip())

    def send(
        self, method: str, params: dict[str, Any] | None = None, *, browser: bool = False
    ) -> dict[str, Any]:
        """Send a command (to the tab unless ``browser``) and return its result; an error answer raises."""
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session is not None and not browser:
            message["sessionId"] = self.session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            answer = self._read_message(deadline)
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event ``method`` (already seen or still to come)."""
        deadline = time.monotonic() + TIMEOUT
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event["method"] == method:
                    return event
            seen = len(self.events)
            self._read_message(deadline)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, path: Path) -> Path:
        """The whole page as a PNG."""
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})["data"]
        path.write_bytes(base64.b64decode(data))
        return path


@contextmanager
def open_page(path: Path, width: int = 1280, height: int = 900) -> Iterator[Page]:
    """``path`` loaded in a fresh headless Chromium with its own profile; closed on the way out."""
    binary = chromium_path()
    if binary is None:
        raise FileNotFoundError("no Chromium found (install chromium, or set STORYREEL_CHROMIUM)")
    to_read, to_browser = os.pipe()  # Chromium reads commands on fd 3
    from_browser, to_write = os.pipe()  # and writes answers on fd 4

    def wire_pipes() -> None:
        # through fresh copies: one end may already be fd 3 or 4, and the pipe's own fds close on exec
        commands, answers = os.dup(to_read), os.dup(to_write)
        os.dup2(commands, 3)
        os.dup2(answers, 4)

    with tempfile.TemporaryDirectory(prefix="storyreel-chromium-") as profile:
        process = subprocess.Popen(
            [
                binary,
                "--headless",
                "--remote-debugging-pipe",
                "--no-sandbox",  # containers and CI run as root, where the sandbox cannot start
                "--disable-gpu",
                "--no-first-run",
                "--mute-audio",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            close_fds=False,
            preexec_fn=wire_pipes,
        )
        os.close(to_read)
        os.close(to_write)
        page = Page(to_browser, from_browser)
        try:
            target = page.send("Target.createTarget", {"url": "about:blank"}, browser=True)["targetId"]
            page.session = page.send(
                "Target.attachToTarget", {"targetId": target, "flatten": True}, browser=True
            )["sessionId"]
            for domain in ("Page", "Runtime", "Log"):
                page.send(f"{domain}.enable")
            page.send("Page.navigate", {"url": path.resolve().as_uri()})
            page.wait_for("Page.loadEventFired")
            yield page
        finally:
            try:
                page.send("Browser.close", browser=True)
            except (OSError, RuntimeError, TimeoutError, ConnectionError):
                pass
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            os.close(to_browser)
            os.close(from_browser)
