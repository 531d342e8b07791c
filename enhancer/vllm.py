"""The ``vllm`` enhancer: every shot's caption from an OpenAI-compatible chat server, concurrently.

Any server that speaks ``POST /v1/chat/completions`` works; vLLM's is the one it is built and tested
against (start one with ``storyreel enhancer serve``). Settings come from the storyboard's
``enhancer:`` block: ``url`` (else ``$STORYREEL_ENHANCER_URL``, else ``http://127.0.0.1:8000/v1``),
``model`` (else the one model the server serves), ``max_words``, ``concurrency`` (requests in
flight), ``timeout`` (seconds to keep retrying a server that fails), ``request_timeout`` (seconds one
answer may take), ``wait`` (seconds to wait for a server that is not listening yet), ``system_template`` and ``user_template`` (paths of Jinja2 files that replace the
bundled ``prompts/system.j2`` and ``prompts/user.j2``), each defaulting as ``EnhancerSettings`` says.
``$STORYREEL_ENHANCER_API_KEY``, when set, is sent as a bearer token.

How it behaves:

* Each shot is one request whose messages depend only on that shot and the film (see
  :mod:`storyreel.enhancer.chat`); greedy sampling with a fixed seed, so a server that honours seeds
  answers the same way every time.
* Up to ``concurrency`` requests are in flight; ``on_result`` gets each shot's prompt as soon as its
  answer is in, so a caller can save it before the others finish. The returned list keeps shot order.
* Answers are cleaned (:mod:`storyreel.enhancer.clean`): no preamble, quotes or markdown, English
  only, at most ``max_words`` words ending at a sentence. An unusable answer is asked for again
  (3 tries in all); a shot that never gets one fails with :class:`EnhancerAnswerUnusable`, which
  carries the prompts that did succeed.
* A timeout, a 5xx or a 429 is retried with exponential backoff (a server's ``Retry-After`` is
  honoured) for at most ``timeout`` seconds, then :class:`EnhancerUnavailable` says which URL
  failed and how to start a server; the first such failure stops the other shots.
* A refused connection means nothing listens there: it is retried only for ``wait`` seconds (a
  server still loading its model opens its port late; ``--enhancer-wait``), or for
  :data:`REFUSED_GRACE` seconds when ``wait`` is 0, so a render against a server that is down fails
  within seconds with the same message.
  A 4xx other than 429 fails at once with :class:`EnhancerRejected` and the server's reason.

>>> enhancer = VLLMEnhancer(EnhancerSettings(backend="vllm", url="http://127.0.0.1:8000"))
>>> enhancer.url
'http://127.0.0.1:8000/v1'
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from storyreel.enhance import EnhancedPrompt, FilmContext, ShotContext
from storyreel.storyboard import EnhancerSettings

from .chat import (
    ANSWER_TRIES,
    DEFAULT_MODEL,
    ChatEnhancer,
    EnhancerAnswerUnusable,
    EnhancerError,
    EnhancerRejected,
    EnhancerUnavailable,
    answer_unusable,
    sampling,
)
from .clean import UnusableAnswer, clean_caption
from .serve import DEFAULT_PORT, VLLMServer
from .serve import serve as start_vllm

__all__ = [
    "EnhancerAnswerUnusable",
    "EnhancerError",
    "EnhancerRejected",
    "EnhancerUnavailable",
    "VLLMEnhancer",
    "normalise_url",
]

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}/v1"  # where `storyreel enhancer serve` listens
URL_ENV = "STORYREEL_ENHANCER_URL"
API_KEY_ENV = "STORYREEL_ENHANCER_API_KEY"
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 10.0
REFUSED_GRACE = 2.0  # seconds a refused connection is retried without --enhancer-wait: a server restarting


def normalise_url(url: str) -> str:
    """The API base of an OpenAI-compatible server, whichever way its address was written.

    >>> normalise_url("127.0.0.1:8000"), normalise_url("http://gpu-box:8000/v1/chat/completions")
    ('http://127.0.0.1:8000/v1', 'http://gpu-box:8000/v1')
    """
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/completions", "/models"):
        if path.endswith(suffix):
            path = path[: -len(suffix)]
    if not path:
        path = "/v1"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class _Transient(Exception):
    """A failure worth retrying: no connection, a timeout, a 5xx or a 429."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Refused(_Transient):
    """Nothing listens at the address: down, or still loading."""


class _Stopped(Exception):
    """Another shot's request failed for good; this one gave up without finishing."""


class _ShotFailed(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class VLLMEnhancer(ChatEnhancer):
    """Detailed captions from a chat model behind an OpenAI-compatible server (vLLM's first of all).

    Keyword arguments override the settings of the same name (handy in code and tests); everything
    else, defaults included, comes from ``settings``. ``first_backoff`` is the first pause, in
    seconds, before a failed request is tried again.
    """

    name = "vllm"

    def __init__(
        self,
        settings: EnhancerSettings,
        *,
        concurrency: int | None = None,
        timeout: float | None = None,
        request_timeout: float | None = None,
        wait: float | None = None,
        first_backoff: float = FIRST_BACKOFF,
        system_template: str | Path | None = None,
        user_template: str | Path | None = None,
    ):
        super().__init__(settings, system_template=system_template, user_template=user_template)
        self.url = normalise_url(settings.url or os.environ.get(URL_ENV) or DEFAULT_URL)
        self.concurrency = concurrency or settings.concurrency
        self.timeout = settings.timeout if timeout is None else timeout
        self.request_timeout = request_timeout or settings.request_timeout
        self.wait = settings.wait if wait is None else wait
        self.first_backoff = first_backoff
        self._api_key = os.environ.get(API_KEY_ENV)
        self._served: str | None = None
        self._lock = threading.Lock()

    # --- the contract -------------------------------------------------------------------------------------------

    def enhance(
        self,
        film: FilmContext,
        shots: Sequence[ShotContext],
        on_result: Callable[[EnhancedPrompt], None] | None = None,
    ) -> list[EnhancedPrompt]:
        """One caption per shot, in the order given; ``on_result`` gets each as its answer arrives.

        ``on_result`` is called from the calling thread, one prompt at a time.
        """
        if not shots:
            return []
        model = self.served_model()
        stop = threading.Event()
        done: dict[int, EnhancedPrompt] = {}
        failures: dict[int, str] = {}
        fatal: BaseException | None = None
        pool = ThreadPoolExecutor(min(self.concurrency, len(shots)), thread_name_prefix="storyreel-enhance")
        futures: dict[Future[EnhancedPrompt], int] = {
            pool.submit(self._enhance_shot, film, shot, model, stop): index
            for index, shot in enumerate(shots)
        }
        finished = False
        try:
            for future in as_completed(futures):
                index = futures[future]
                try:
                    prompt = future.result()
                except (CancelledError, _Stopped):
                    continue
                except _ShotFailed as failure:
                    failures[index] = failure.reason
                    continue
                except EnhancerError as error:
                    # The server is down or refuses us: the other shots cannot do better; stop them.
                    fatal = fatal or error
                    _stop_all(stop, futures)
                    continue
                done[index] = prompt
                if on_result is not None:
                    on_result(prompt)  # answers already paid for are delivered, even after a failure
            finished = True
        finally:
            if not finished:
                _stop_all(stop, futures)  # on_result raised, or Ctrl-C: requests in flight give up
            pool.shutdown(wait=finished, cancel_futures=True)
        if fatal is not None:
            raise fatal
        results = [done[index] for index in sorted(done)]
        if failures:
            raise answer_unusable(
                f"the model {self._served or self.model!r} at {self.url}", shots, failures, results
            )
        return results

    @classmethod
    def serve(
        cls,
        model: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        tensor_parallel_size: int | None = None,
        max_model_len: int | None = None,
    ) -> VLLMServer:
        """Start vLLM's OpenAI-compatible server for ``model`` with :func:`storyreel.enhancer.serve.serve`.

        ``model`` defaults to SkyReels-V2's own prompt enhancer (``DEFAULT_MODEL``); the other arguments
        left None take that function's defaults, whose port is the one this backend calls when no URL is set.
        """
        options: dict[str, Any] = {
            "host": host,
            "port": port,
            "tensor_parallel_size": tensor_parallel_size,
            "max_model_len": max_model_len,
        }
        return start_vllm(model or DEFAULT_MODEL, **{k: v for k, v in options.items() if v is not None})

    # --- the server ---------------------------------------------------------------------------------------------

    def served_model(self) -> str:
        """The model id requests name: ``settings.model`` after checking the server has it, else the one it serves."""
        with self._lock:
            if self._served is None:
                self._served = self._resolve_model()
            return self._served

    def _resolve_model(self) -> str:
        try:
            listing = self._request("GET", "/models", None, threading.Event())
        except EnhancerRejected:
            if self.model:
                return self.model  # a server without /models: trust the name we were given
            raise
        served = [str(entry.get("id")) for entry in listing.get("data", []) if isinstance(entry, dict)]
        if self.model is None:
            if not served:
                raise EnhancerRejected(f"the server at {self.url} serves no model; {self._serve_hint()}")
            return served[0]
        if served and self.model not in served:
            raise EnhancerRejected(
                f"enhancer.model: {self.model!r} is not served at {self.url}, which serves: {', '.join(served)}; "
                f"set enhancer.model to one of those, or start a server for it with: "
                f"storyreel enhancer serve --model {self.model}"
            )
        return self.model

    def _enhance_shot(
        self, film: FilmContext, shot: ShotContext, model: str, stop: threading.Event
    ) -> EnhancedPrompt:
        messages = self.prompts.messages(film, shot, self.max_words)
        reason = ""
        for attempt in range(ANSWER_TRIES):
            body = {
                "model": model,
                "messages": messages,
                **sampling(self.max_words, attempt),
                "n": 1,
                "stream": False,
            }
            try:
                answer = self._request("POST", "/chat/completions", body, stop)
            except EnhancerError:
                stop.set()  # at once, so that this worker's next shot is not sent
                raise
            try:
                choice = answer["choices"][0]
                content = choice["message"].get("content") or ""
                truncated = choice.get("finish_reason") == "length"
            except (KeyError, IndexError, TypeError, AttributeError):
                reason = f"the server's answer has no message: {json.dumps(answer)[:200]}"
                continue
            try:
                caption = clean_caption(content, self.max_words, truncated=truncated)
            except UnusableAnswer as unusable:
                reason = str(unusable)
                continue
            return EnhancedPrompt(shot.id, caption, source=self.name, model=str(answer.get("model") or model))
        raise _ShotFailed(reason)

    def _request(
        self, method: str, path: str, body: dict[str, Any] | None, stop: threading.Event
    ) -> dict[str, Any]:
        """One call, retried on transient faults until it succeeds or ``timeout`` seconds have passed since the first."""
        refused_until: float | None = (
            None  # nothing listening: waited for only while a server may be starting
        )
        failing_until: float | None = None  # any other fault: retried for ``timeout`` seconds
        tries = 0
        timeout = self.request_timeout
        while True:
            if stop.is_set():
                raise _Stopped()
            tries += 1
            try:
                return self._call_once(method, path, body, timeout)
            except _Transient as fault:
                now = time.monotonic()
                if isinstance(fault, _Refused):
                    refused_until = refused_until or now + (self.wait or REFUSED_GRACE)
                    deadline = refused_until
                else:
                    failing_until = failing_until or now + self.timeout
                    deadline = failing_until
                if fault.retry_after is not None:
                    delay = fault.retry_after
                else:
                    delay = min(self.first_backoff * 2 ** (tries - 1), MAX_BACKOFF) * random.uniform(0.8, 1.0)
                if now + delay >= deadline:
                    raise self._unavailable(fault, tries, fault.retry_after) from None
                if stop.wait(delay):
                    raise _Stopped() from None
                timeout = max(0.1, min(self.request_timeout, deadline - time.monotonic()))

    def _call_once(
        self, method: str, path: str, body: dict[str, Any] | None, timeout: float
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            status = error.code
            detail = _error_detail(error)
            if status == 429 or status >= 500:
                raise _Transient(
                    f"HTTP {status}: {detail}", _retry_after(error.headers.get("Retry-After"))
                ) from None
            raise self._rejected(status, detail, path) from None
        except urllib.error.URLError as error:
            if isinstance(error.reason, ConnectionRefusedError):
                raise _Refused(_describe(error.reason)) from None
            raise _Transient(_describe(error.reason)) from None
        except TimeoutError as error:
            raise _Transient(_describe(error)) from None
        except ConnectionRefusedError as error:
            raise _Refused(_describe(error)) from None
        except (ConnectionError, http.client.HTTPException, OSError) as error:
            raise _Transient(_describe(error)) from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise _Transient(f"the answer is not JSON: {raw[:120]!r}") from None
        if not isinstance(answer, dict):
            raise _Transient(f"the answer is not a JSON object: {raw[:120]!r}")
        return answer

    # --- messages -----------------------------------------------------------------------------------------------

    def _serve_hint(self) -> str:
        parts = urllib.parse.urlsplit(self.url)
        port = f" --port {parts.port}" if parts.port and parts.port != DEFAULT_PORT else ""
        return (
            f"start one with: storyreel enhancer serve --model {self.model or DEFAULT_MODEL}{port} "
            f"(or point enhancer.url, --enhancer-url or ${URL_ENV} at a running OpenAI-compatible server), "
            f"or use --enhancer template"
        )

    def _unavailable(self, fault: _Transient, tries: int, retry_after: float | None) -> EnhancerUnavailable:
        if retry_after is not None and tries == 1:
            waited = f"it asked to retry after {retry_after:g} s, beyond the {self.timeout:g} s allowed"
        elif isinstance(fault, _Refused):
            waited = (
                f"{tries} {'try' if tries == 1 else 'tries'} over {self.wait or REFUSED_GRACE:g} s; "
                "if the server is still loading, wait for it with --enhancer-wait SECONDS"
            )
        else:
            waited = f"{tries} {'try' if tries == 1 else 'tries'} over {self.timeout:g} s"
        return EnhancerUnavailable(
            f"cannot get an answer from the enhancer server at {self.url} ({fault.reason}; {waited}); {self._serve_hint()}"
        )

    def _rejected(self, status: int, detail: str, path: str) -> EnhancerRejected:
        if status in (401, 403):
            fix = f"set ${API_KEY_ENV} to the server's API key"
        elif status == 404 and path == "/models":
            fix = "check enhancer.url: it should be the server's API base, such as http://127.0.0.1:8000/v1"
        elif status == 404:
            fix = "check enhancer.url and enhancer.model (GET /v1/models lists what the server serves)"
        else:
            fix = "check enhancer.model, max_words and the server's --max-model-len"
        return EnhancerRejected(
            f"the enhancer server at {self.url} refused the request (HTTP {status}: {detail}); {fix}"
        )


def _stop_all(stop: threading.Event, futures: dict[Future[EnhancedPrompt], int]) -> None:
    stop.set()
    for future in futures:
        future.cancel()


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header, which holds either seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_detail(error: urllib.error.HTTPError) -> str:
    """The server's own reason: OpenAI's {"error": {"message": ...}}, vLLM's older {"message": ...}, or the text."""
    try:
        raw = error.read()
    except OSError:
        raw = b""
    try:
        data = json.loads(raw)
    except ValueError:
        text = raw.decode("utf-8", "replace").strip()
        return text[:300] or (error.reason if isinstance(error.reason, str) else "no details")
    if isinstance(data, dict):
        inner = data.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
        if data.get("message"):
            return str(data["message"])
        if data.get("detail"):
            return str(data["detail"])
    return json.dumps(data)[:300]


def _describe(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "no answer within the timeout"
    if isinstance(reason, socket.gaierror):
        return f"unknown host ({reason})"
    if isinstance(reason, ConnectionResetError):
        return "connection reset"
    if isinstance(reason, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    return str(reason) or type(reason).__name__
