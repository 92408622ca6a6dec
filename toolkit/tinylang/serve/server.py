"""``tinylang serve``: an OpenAI-compatible HTTP server for a trained run, standard library only.

One thread per connection parses and answers; one engine thread owns the model and batches every
request in flight. Streams are server-sent events, as OpenAI's clients expect.

    server = ModelServer.from_run("runs/fi-tiny", ServeOptions(port=8000))
    server.serve_forever()
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import queue
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from ..checkpoint import load_model
from ..guidance import DEFAULT_STRENGTH, WordGuide, pack_matcher
from ..langpack import LanguagePack, load_pack
from ..run_corpus import run_language, run_text_column
from ..model import Megabyte
from . import api
from .engine import Engine, EngineBusy, Finished, GenerationRequest

MAX_BODY_BYTES = 1 << 20


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8000  # 0: any free port
    name: str | None = None  # the model id clients send; default: the run folder's name
    chat_format: str = "auto"  # auto (instruct when trained on the instruct column), instruct or story
    lang: str | None = None  # pack whose instruct labels chat uses; default: the corpus's
    max_batch: int = 8
    device: str = "cpu"
    api_key: str | None = None  # when set, every request needs "Authorization: Bearer <api_key>"
    allow_origin: str | None = None  # CORS: the browser origin allowed to call the API ("*": any)
    max_queue: int = 256  # request rows that may wait for a batch slot; more get a 503


@dataclass
class ServedModel:
    name: str
    model: Megabyte
    engine: Engine
    instruct_pack: LanguagePack | None  # set for instruct models: chat renders their request format
    created: int
    trained_column: str | None = None  # the recipe's data.text_column (None for exports that do not say)
    _matcher: Callable[[str, str], bool] | None = None

    def word_matcher(self) -> Callable[[str, str], bool]:
        """The instruct pack's rule for a requested word being used, built at the first request that
        asks for words (its lemmatiser takes a moment to load)."""
        if self._matcher is None:
            self._matcher = pack_matcher(self.instruct_pack)
        return self._matcher


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def served_name(run: str | Path) -> str:
    """The model id clients send: the run folder's name, also when a checkpoint file is served."""
    path = Path(run)
    return path.resolve().parent.name if path.is_file() else path.resolve().name


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, served: ServedModel, options: ServeOptions):
        self.served, self.options = served, options
        self._open: dict[threading.Thread, socket.socket] = {}  # connection of each handler thread
        self._open_lock = threading.Lock()
        super().__init__((options.host, options.port), _Handler)

    @classmethod
    def from_run(cls, run: str | Path, options: ServeOptions | None = None) -> "ModelServer":
        """Load a run (or checkpoint or export) and start its engine."""
        options = options or ServeOptions()
        if options.chat_format not in ("auto", "instruct", "story"):
            raise ValueError(f"chat format {options.chat_format!r}: choose auto, instruct or story")
        model, recipe = load_model(run, options.device)
        trained_column = run_text_column(run, recipe)
        instruct = options.chat_format == "instruct" or (options.chat_format == "auto" and trained_column == "instruct")
        pack = load_pack(options.lang or run_language(run, recipe)) if instruct else None
        engine = Engine(model, options.max_batch, options.max_queue).start()
        served = ServedModel(options.name or served_name(run), model, engine, pack, int(time.time()),
                             trained_column)
        try:
            return cls(served, options)
        except OSError:
            engine.close()
            raise

    def server_close(self) -> None:
        """Stop the engine, then end every open connection and its thread. A handler left blocked on
        an idle keep-alive connection would otherwise be woken during interpreter shutdown, which
        aborts the process."""
        self.served.engine.close()
        super().server_close()
        with self._open_lock:
            open_now = dict(self._open)
        for connection in open_now.values():
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for thread in open_now:
            thread.join(timeout=5)

    def track(self, connection: socket.socket | None) -> None:
        """Called by each handler thread: its connection when it starts, None when it ends."""
        with self._open_lock:
            if connection is None:
                self._open.pop(threading.current_thread(), None)
            else:
                self._open[threading.current_thread()] = connection

    def start_in_thread(self) -> threading.Thread:
        """Serve from a background thread (tests, notebooks); stop with shutdown() + server_close()."""
        thread = threading.Thread(target=self.serve_forever, name="tinylang-serve", daemon=True)
        thread.start()
        return thread

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"


class _Watch:
    """Twice a second, while a handler waits on its events: is the engine still running, is the
    client still there? Neither a stopped engine nor a vanished client may keep a handler (and a
    batch row) busy for ever."""

    def __init__(self, engine: Engine, client_waiting=lambda: True, every_s: float = 0.5):
        self.engine, self.client_waiting, self.every_s = engine, client_waiting, every_s
        self.checked = time.monotonic()

    def next_event(self, sink: queue.Queue) -> tuple[int, "str | Finished"]:
        while True:
            if time.monotonic() - self.checked >= self.every_s:
                self.checked = time.monotonic()
                if not self.client_waiting():
                    raise ConnectionResetError("the client closed the connection")
            try:
                return sink.get(timeout=self.every_s)
            except queue.Empty:
                if not self.engine.alive:
                    return -1, Finished("error", 0, "the generation engine stopped")


def _coalesced(sink: queue.Queue, watch: _Watch) -> list[tuple[int, "str | Finished"]]:
    """Wait for the next event, then take whatever else has arrived, joining the text pieces of
    each choice: a client that reads slower than the model gets fewer, larger events."""
    events = [watch.next_event(sink)]
    while True:
        try:
            events.append(sink.get_nowait())
        except queue.Empty:
            break
    merged: list[tuple[int, str | Finished]] = []
    text: dict[int, str] = {}
    for index, event in events:
        if isinstance(event, str):
            text[index] = text.get(index, "") + event
            continue
        if text.get(index):
            merged.append((index, text.pop(index)))
        merged.append((index, event))
    return [(index, piece) for index, piece in text.items() if piece] + merged


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ModelServer
    quiet = True

    def setup(self) -> None:
        super().setup()
        # Stream events are small writes: without this, Nagle's algorithm holds each for up to 40 ms.
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(None)

    def log_message(self, format: str, *args: Any) -> None:  # access log off; errors still go to stderr
        if not self.quiet:
            super().log_message(format, *args)

    # -- routing ----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch({"/v1/models": self._models}, "GET")

    def do_POST(self) -> None:
        self._dispatch({"/v1/completions": self._completions, "/v1/chat/completions": self._chat}, "POST")

    def do_PUT(self) -> None:
        self._refuse("PUT")

    def do_DELETE(self) -> None:
        self._refuse("DELETE")

    def do_PATCH(self) -> None:
        self._refuse("PATCH")

    def _refuse(self, method: str) -> None:
        """A JSON 405 (404 for unknown paths) rather than the standard library's HTML 501 page."""
        self.close_connection = True  # the request's body, if any, is never read
        self._dispatch({}, method)

    def do_OPTIONS(self) -> None:
        """CORS preflight of a browser chat UI (answered only when --allow-origin is set)."""
        self.send_response(204 if self.server.options.allow_origin else 405)
        self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
        # Echo what the browser asks for: OpenAI's SDKs add their own x-stainless-* headers, and a
        # fixed list would fail their preflight.
        asked = self.headers.get("Access-Control-Request-Headers")
        self.send_header("Access-Control-Allow-Headers", asked or "Authorization, Content-Type")
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def end_headers(self) -> None:
        if self.server.options.allow_origin:
            self.send_header("Access-Control-Allow-Origin", self.server.options.allow_origin)
        super().end_headers()

    def _check_key(self) -> None:
        key = self.server.options.api_key
        if key is None:
            return
        scheme, _, sent = self.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(sent.strip().encode(), key.encode()):
            raise api.ApiError(401, "missing or wrong API key (send Authorization: Bearer <key>)",
                               code="invalid_api_key")

    def _dispatch(self, routes: dict, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        self._replied = False  # set once a stream's headers are out: an error can then only end it
        try:
            self._check_key()
            if path.startswith("/v1/models/") and method == "GET":
                self._check_model(path.removeprefix("/v1/models/"))
                return self._json(200, self._model_card())
            handler = routes.get(path)
            if handler is None:
                known = {"/v1/models", "/v1/completions", "/v1/chat/completions"}
                if path in known or path.startswith("/v1/models/"):
                    raise api.ApiError(405, f"{method} is not allowed on {path}", code="method_not_allowed")
                raise api.ApiError(404, f"unknown endpoint {path}; this server has {', '.join(sorted(known))}",
                                   code="not_found")
            handler()
        except api.ApiError as error:
            self._reply_error(error)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as error:  # a bug must still get an answer, not a dropped connection
            self.log_error("%s", f"{type(error).__name__}: {error}")
            self._reply_error(api.ApiError(500, f"internal error: {type(error).__name__}: {error}", kind="server_error"))

    def _reply_error(self, error: "api.ApiError") -> None:
        if self._replied:
            return
        try:
            self._json(error.status, error.body())
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- endpoints --------------------------------------------------------------------------------

    def _model_card(self) -> dict:
        s = self.server.served
        return {"id": s.name, "object": "model", "created": s.created, "owned_by": "tinylang"}

    def _models(self) -> None:
        self._json(200, {"object": "list", "data": [self._model_card()]})

    def _completions(self) -> None:
        request = api.parse_request(api.CompletionRequest, self._body())
        self._check_model(request.model)
        self._answer(request, [(text, text if request.echo else "") for text in request.prompts], chat=False)

    def _chat(self) -> None:
        request = api.parse_request(api.ChatRequest, self._body())
        self._check_model(request.model)
        served = self.server.served
        prompt, beginning, words = api.chat_prompt(request, served.instruct_pack)
        strength = DEFAULT_STRENGTH if request.guidance is None else request.guidance
        guide = None
        if words and strength:  # each choice steers its own story
            def guide():
                return WordGuide(words, strength, is_use=served.word_matcher(), prompt_tail=beginning)
        self._answer(request, [(prompt, beginning)], chat=True, guide=guide)

    def _check_model(self, name: str) -> None:
        served = self.server.served.name
        if name != served:
            raise api.ApiError(404, f"the model {name!r} does not exist; this server has {served!r}", "model",
                               "model_not_found")

    # -- generation -------------------------------------------------------------------------------

    def _answer(self, request, prompts: list[tuple[str, str]], chat: bool, guide=None) -> None:
        """Generate n choices for each (prompt, text the answer starts with); choice p * n + i answers
        prompt p with seed + i, so an answer does not depend on the prompts beside it. ``guide()``,
        when given, makes each choice's logits processor (word guidance)."""
        sink: queue.Queue = queue.Queue()
        top_p = request.top_p if request.top_p < 1.0 else None
        jobs = [
            GenerationRequest(prompt, request.byte_budget, request.temperature, top_p, request.top_k or None, request.stops,
                              None if request.seed is None else request.seed + i, request.ignore_eos,
                              index=p * request.n + i, sink=sink, processor=guide() if guide else None)
            for p, (prompt, _) in enumerate(prompts) for i in range(request.n)
        ]
        prefixes = [prefix for _, prefix in prompts for _ in range(request.n)]
        prompt_bytes = sum(len(prompt.encode("utf-8")) for prompt, _ in prompts)
        try:
            self.server.served.engine.submit_all(jobs)
        except EngineBusy as error:
            raise api.ApiError(503, str(error), kind="server_error", code="server_busy") from None
        try:
            if request.stream:
                self._stream(request, jobs, sink, prefixes, prompt_bytes, chat)
            else:
                self._collect(request, jobs, sink, prefixes, prompt_bytes, chat)
        finally:
            for job in jobs:
                job.cancel()  # a no-op for finished jobs; frees the batch row of a vanished client

    def _client_waiting(self) -> bool:
        """False once the client has closed its connection (readable with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return not readable or self.connection.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def _collect(self, request, jobs, sink, prefixes: list[str], prompt_bytes: int, chat: bool) -> None:
        texts, reasons = list(prefixes), [""] * len(jobs)
        generated, pending = 0, len(jobs)
        watch = _Watch(self.server.served.engine, self._client_waiting)
        while pending:
            index, event = watch.next_event(sink)
            if isinstance(event, Finished):
                self._raise_on_error(event)
                reasons[index], pending = event.reason, pending - 1
                generated += event.generated_bytes
            else:
                texts[index] += event
        use = api.usage(prompt_bytes, generated)
        build = api.chat_body if chat else api.completion_body
        self._json(200, build(api.new_id("chatcmpl" if chat else "cmpl"), request.model, texts, reasons, use))

    def _stream(self, request, jobs, sink, prefixes: list[str], prompt_bytes: int, chat: bool) -> None:
        answer_id, model = api.new_id("chatcmpl" if chat else "cmpl"), request.model
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self._replied = True

        def piece(index: int, text: str, reason: str | None = None, first: bool = False) -> dict:
            if not chat:
                return api.completion_chunk(answer_id, model, index, text, reason)
            delta = ({"role": "assistant"} if first else {}) | ({"content": text} if text or first else {})
            return api.chat_chunk(answer_id, model, index, delta, reason)

        for job in jobs:
            if chat or prefixes[job.index]:
                self._event(piece(job.index, prefixes[job.index], first=True))
        generated, pending = 0, len(jobs)
        watch = _Watch(self.server.served.engine)  # a vanished streaming client shows when a write fails
        while pending:
            for index, event in _coalesced(sink, watch):
                if isinstance(event, Finished):
                    if event.reason == "error":
                        self._event({"error": {"message": event.error, "type": "server_error"}})
                        return
                    self._event(piece(index, "", event.reason))
                    pending -= 1
                    generated += event.generated_bytes
                else:
                    self._event(piece(index, event))
        if request.stream_options is not None and request.stream_options.include_usage:
            kind = "chat.completion.chunk" if chat else "text_completion"
            self._event(api.usage_chunk(answer_id, model, kind, api.usage(prompt_bytes, generated)))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    @staticmethod
    def _raise_on_error(event: Finished) -> None:
        if event.reason == "error":
            raise api.ApiError(500, f"generation failed: {event.error}", kind="server_error")

    # -- plumbing ---------------------------------------------------------------------------------

    def _body(self) -> Any:
        raw = self._chunked_body() if "chunked" in self.headers.get("Transfer-Encoding", "").lower() else self._sized_body()
        try:
            return json.loads(raw or b"null")
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise api.ApiError(400, f"the request body is not valid JSON ({error})") from None

    def _sized_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise api.ApiError(400, "invalid Content-Length") from None
        if length < 0:
            raise api.ApiError(400, "invalid Content-Length")
        if length > MAX_BODY_BYTES:
            raise api.ApiError(413, f"request body over {MAX_BODY_BYTES:,} bytes")
        return self.rfile.read(length) if length else b""

    def _chunked_body(self) -> bytes:
        """A body sent with Transfer-Encoding: chunked (some HTTP clients stream JSON that way)."""
        chunks, total = [], 0
        while True:
            line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise api.ApiError(400, "invalid chunked request body") from None
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers, then the blank line
                    pass
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise api.ApiError(413, f"request body over {MAX_BODY_BYTES:,} bytes")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)  # the CRLF after each chunk

    def _json(self, status: int, body: dict) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status >= 400:  # the body may be unread: do not reuse the connection
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _event(self, body: dict) -> None:
        self.wfile.write(b"data: " + json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n\n")
        self.wfile.flush()
