"""A local OpenAI-compatible server with scripted answers and injected faults.

The tests and benchmarks drive tinylang's real LLM layer (the real ``openai`` client, real HTTP)
against it: chat completions, the Files + Batch API, and faults on demand (429 with Retry-After,
500, slow answers, dropped connections, empty or truncated answers, malformed JSON, 401).

    with OpenAIServer(latency_s=0.2) as server:        # or: python -m tinylang.testing.openai_server
        server.faults.extend(["429", "500"])            # the next two requests fail like this
        client = openai.OpenAI(base_url=server.url, api_key="test")
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULTS = ("429", "500", "401", "slow", "drop", "empty", "truncated", "length", "malformed")


def default_answer(messages: list[dict]) -> str:
    """A deterministic 'story' that names the quoted words of the prompt (so checks can find them)."""
    prompt = messages[-1]["content"] if messages else ""
    words = re.findall(r"[”\"]([^”\"]{1,40})[”\"]", prompt)
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:12]
    return f"Once upon a time there was a story about {', '.join(words) or 'nothing'}. It was story {digest}. The end."


class OpenAIServer:
    """Start with ``with``; ``url`` is the base URL to give the client (ends in /v1)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, latency_s: float = 0.0,
                 answer: Callable[[list[dict]], str] = default_answer, api_key: str | None = None,
                 slow_s: float = 5.0, retry_after_s: float = 1.0) -> None:
        self.latency_s = latency_s
        self.answer = answer
        self.api_key = api_key
        self.slow_s = slow_s
        self.retry_after_s = retry_after_s
        self.faults: deque[str] = deque()  # consumed one per chat request
        self.requests: list[dict] = []  # every chat request body, in arrival order
        self.completed: list[dict] = []  # chat requests that got a successful answer
        self.request_ids: list[str | None] = []  # X-Client-Request-Id of every chat request
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batch_polls_until_done = 1
        self.in_flight = 0
        self.max_in_flight = 0  # most chat requests being answered at the same moment
        self._lock = threading.Lock()
        self._httpd = _Server((host, port), _handler_for(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "OpenAIServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def next_fault(self) -> str | None:
        with self._lock:
            return self.faults.popleft() if self.faults else None

    def chat_answer(self, body: dict) -> dict:
        text = self.answer(body.get("messages", []))
        return {
            "id": f"chatcmpl-{len(self.completed)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "test-model"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": _tokens(body), "completion_tokens": max(1, len(text) // 4),
                      "total_tokens": _tokens(body) + max(1, len(text) // 4)},
        }


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # many concurrent clients connect at once

    def handle_error(self, request, client_address) -> None:
        """A client that hung up (a killed build, a timeout) is normal here, not an error to print."""
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)
    daemon_threads = True


def _tokens(body: dict) -> int:
    return max(1, sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4)


def _handler_for(server: OpenAIServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms stall

        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, status: int, payload, headers: dict | None = None, raw: bytes | None = None) -> None:
            data = raw if raw is not None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, message: str, code: str, headers: dict | None = None) -> None:
            self._send(status, {"error": {"message": message, "type": code, "code": code}}, headers)

        def _authorised(self) -> bool:
            if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                self._error(401, "Incorrect API key provided.", "invalid_api_key")
                return False
            return True

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length", 0)))

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            if not self._authorised():
                return
            if self.path == "/v1/models":
                return self._send(200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]})
            match = re.fullmatch(r"/v1/batches/([\w-]+)", self.path)
            if match and match.group(1) in server.batches:
                return self._send(200, _poll_batch(server, match.group(1)))
            match = re.fullmatch(r"/v1/files/([\w-]+)/content", self.path)
            if match and match.group(1) in server.files:
                data = server.files[match.group(1)]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self._error(404, f"no route {self.path}", "not_found")

        def do_POST(self) -> None:  # noqa: N802
            body = self._body()
            if not self._authorised():
                return
            if self.path == "/v1/chat/completions":
                with server._lock:
                    server.request_ids.append(self.headers.get("X-Client-Request-Id"))
                return self._chat(json.loads(body))
            if self.path == "/v1/files":
                return self._upload(body)
            if self.path == "/v1/batches":
                return self._create_batch(json.loads(body))
            self._error(404, f"no route {self.path}", "not_found")

        def _chat(self, body: dict) -> None:
            with server._lock:
                server.requests.append(body)
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                self._answer_chat(body)
            finally:
                with server._lock:
                    server.in_flight -= 1

        def _answer_chat(self, body: dict) -> None:
            fault = server.next_fault()
            if server.latency_s:
                time.sleep(server.latency_s)
            if fault == "429":
                return self._error(429, "Rate limit reached.", "rate_limit_exceeded",
                                   {"Retry-After": f"{server.retry_after_s:g}"})
            if fault == "500":
                return self._error(500, "The server had an error.", "server_error")
            if fault == "401":
                return self._error(401, "Incorrect API key provided.", "invalid_api_key")
            if fault == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if fault == "slow":
                time.sleep(server.slow_s)
            answer = server.chat_answer(body)
            if fault == "empty":
                answer["choices"][0]["message"]["content"] = ""
            if fault == "length":
                answer["choices"][0]["finish_reason"] = "length"
            if fault == "truncated":
                return self._send(200, None, raw=json.dumps(answer).encode()[:60])
            if fault == "malformed":
                return self._send(200, None, raw=b"this is not json")
            with server._lock:
                server.completed.append(body)
            self._send(200, answer)

        def _upload(self, body: bytes) -> None:
            message = BytesParser(policy=HTTP).parsebytes(
                b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
            )
            content = next(p.get_payload(decode=True) for p in message.iter_parts() if p.get_filename())
            file_id = f"file-{len(server.files)}"
            server.files[file_id] = content
            self._send(200, {"id": file_id, "object": "file", "bytes": len(content), "created_at": 0,
                             "filename": "batch.jsonl", "purpose": "batch", "status": "processed"})

        def _create_batch(self, body: dict) -> None:
            batch_id = f"batch-{len(server.batches)}"
            server.batches[batch_id] = {
                "id": batch_id, "object": "batch", "endpoint": body["endpoint"], "input_file_id": body["input_file_id"],
                "completion_window": body["completion_window"], "status": "in_progress", "created_at": 0,
                "polls": 0, "output_file_id": None, "error_file_id": None,
            }
            self._send(200, _public(server.batches[batch_id]))

    return Handler


def _public(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "polls"}


def _poll_batch(server: OpenAIServer, batch_id: str) -> dict:
    """Batches finish after a few polls; each request line is answered like a chat request."""
    batch = server.batches[batch_id]
    batch["polls"] += 1
    if batch["status"] == "in_progress" and batch["polls"] >= server.batch_polls_until_done:
        outputs = []
        for line in server.files[batch["input_file_id"]].decode().splitlines():
            request = json.loads(line)
            with server._lock:
                server.requests.append(request["body"])
                server.completed.append(request["body"])
            outputs.append({"id": f"resp-{len(outputs)}", "custom_id": request["custom_id"],
                            "response": {"status_code": 200, "body": server.chat_answer(request["body"])}})
        output_id = f"file-{len(server.files)}"
        server.files[output_id] = "".join(json.dumps(o) + "\n" for o in outputs).encode()
        batch.update(status="completed", output_file_id=output_id)
    return _public(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8123)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="Delay before every chat answer.")
    args = parser.parse_args()
    with OpenAIServer(args.host, args.port, latency_s=args.latency_ms / 1000) as server:
        print(f"serving an OpenAI-compatible test API on {server.url} (Ctrl-C to stop)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
