"""A small OpenAI-compatible chat server on loopback whose answers a test scripts.

It speaks the parts of the protocol the ``vllm`` enhancer uses (``GET /health``, ``GET /v1/models``,
``POST /v1/chat/completions``) and lets a test decide, request by request, what comes back: a
caption, a status code with headers (``429`` with ``Retry-After``), a delay, a malformed body. It
records every chat request with its arrival time and the most requests it had in flight at once.

    with ScriptedOpenAI(lambda request: Reply("Wide shot: a swan glides.")) as server:
        VLLMEnhancer(EnhancerSettings(url=server.url)).enhance(film, shots)
        server.requests[0].body["messages"]

Run as a script it serves default answers on a port (``--port``), optionally after a delay
(``--start-after``), as a stand-in for a vLLM server starting up.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "scripted-model"


@dataclass
class Reply:
    """One answer: a caption (``content``), or a ``status`` with ``headers``, or a raw ``body``, after ``delay`` s."""

    content: str | None = None
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None  # bytes, or an object sent as JSON, instead of a chat completion
    finish_reason: str = "stop"


@dataclass
class Recorded:
    """A chat request as the server saw it."""

    body: dict[str, Any]
    at: float  # time.monotonic() on arrival
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def system(self) -> str:
        return str(self.body["messages"][0]["content"])

    @property
    def user(self) -> str:
        return str(self.body["messages"][-1]["content"])

    @property
    def prompt(self) -> str:
        """The shot's own prompt: the user message's ``Prompt:`` line."""
        for line in self.user.splitlines():
            if line.startswith("Prompt: "):
                return line.removeprefix("Prompt: ")
        return self.user


def default_reply(request: Recorded) -> Reply:
    """A well-formed caption built from the shot's prompt."""
    return Reply(f"Medium shot: {request.prompt}. The camera slowly pushes in.")


class ScriptedOpenAI:
    """The server, in a thread, on 127.0.0.1 and a free port; a context manager.

    ``respond`` maps a request to its reply; ``replies`` are used first, one per chat request, in order.
    """

    def __init__(
        self,
        respond: Callable[[Recorded], Reply] = default_reply,
        *,
        replies: Iterable[Reply] = (),
        models: Iterable[str] = (MODEL,),
        port: int = 0,
    ):
        self.respond = respond
        self.replies = list(replies)
        self.models = list(models)
        self.requests: list[Recorded] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.model_listings = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="scripted-openai", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def requests_for(self, prompt_fragment: str) -> list[Recorded]:
        return [request for request in self.requests if prompt_fragment in request.prompt]

    def start(self) -> ScriptedOpenAI:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_reply(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
            scripted = self.replies.pop(0) if self.replies else None
        return scripted if scripted is not None else self.respond(request)


def _handler(script: ScriptedOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def do_GET(self) -> None:
            if self.path == "/health":
                self._send(200, b"")
            elif self.path == "/v1/models":
                with script._lock:
                    script.model_listings += 1
                data = [{"id": model, "object": "model", "owned_by": "scripted"} for model in script.models]
                self._send_json(200, {"object": "list", "data": data})
            else:
                self._send_json(404, {"error": {"message": f"no route {self.path}", "code": 404}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path != "/v1/chat/completions":
                self._send_json(404, {"error": {"message": f"no route {self.path}", "code": 404}})
                return
            request = Recorded(json.loads(raw), time.monotonic(), dict(self.headers.items()))
            with script._lock:
                script.in_flight += 1
                script.max_in_flight = max(script.max_in_flight, script.in_flight)
            try:
                reply = script._next_reply(request)
                if reply.delay:
                    time.sleep(reply.delay)
                self._answer(request, reply)
            finally:
                with script._lock:
                    script.in_flight -= 1

        def _answer(self, request: Recorded, reply: Reply) -> None:
            if reply.body is not None:
                body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                self._send(reply.status, body, reply.headers)
            elif reply.status != 200:
                error = {"error": {"message": f"scripted HTTP {reply.status}", "code": reply.status}}
                self._send(reply.status, json.dumps(error).encode(), reply.headers)
            else:
                completion = {
                    "id": f"chatcmpl-{len(script.requests)}",
                    "object": "chat.completion",
                    "model": request.body.get("model") or MODEL,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": reply.content},
                            "finish_reason": reply.finish_reason,
                        }
                    ],
                }
                self._send(200, json.dumps(completion).encode(), reply.headers)

        def _send_json(self, status: int, data: Any) -> None:
            self._send(status, json.dumps(data).encode())

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout test)

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--start-after", type=float, default=0.0, help="seconds to wait before listening")
    args = parser.parse_args()
    time.sleep(args.start_after)
    server = ScriptedOpenAI(port=args.port)
    print(f"serving {server.url}", flush=True)
    server._server.serve_forever()


if __name__ == "__main__":
    main()
