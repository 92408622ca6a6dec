"""The local test server, answering chosen requests with OpenAI-style error bodies.

``tinylang.testing.openai_server`` injects faults by name (429, 500, 401, ...) with a fixed body; the
LLM layer also has to tell errors apart by what OpenAI puts in the body (``code``/``type``:
``insufficient_quota``, ``context_length_exceeded``), so these tests script the whole answer.

    with ErrorServer(lambda body: (400, CONTEXT_TOO_LONG) if "long" in str(body) else None) as server:
        ...
"""

from __future__ import annotations

from collections.abc import Callable

from tinylang.testing.openai_server import OpenAIServer

# Bodies as api.openai.com sends them (the "error" object).
QUOTA = {"message": "You exceeded your current quota, please check your plan and billing details.",
         "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}
CONTEXT_TOO_LONG = {"message": "This model's maximum context length is 8192 tokens. However, your messages resulted "
                               "in 9100 tokens.", "type": "invalid_request_error", "param": "messages",
                    "code": "context_length_exceeded"}
BAD_PARAMETER = {"message": "Unsupported parameter: 'max_tokens' is not supported with this model.",
                 "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}
NO_SUCH_MODEL = {"message": "The model `test-model` does not exist or you do not have access to it.",
                 "type": "invalid_request_error", "param": None, "code": "model_not_found"}

Scripted = Callable[[dict], "tuple[int, dict] | None"]


class ErrorServer(OpenAIServer):
    """``errors(body)`` -> (HTTP status, error object) for a chat request that should fail, or None to
    answer it as the plain test server does (faults, latency and bookkeeping included)."""

    def __init__(self, errors: Scripted, **options) -> None:
        super().__init__(**options)
        self.errors = errors
        self.rejected: list[dict] = []  # chat requests answered with a scripted error
        plain = self._httpd.RequestHandlerClass
        server = self

        class Handler(plain):
            def _answer_chat(self, body: dict) -> None:
                scripted = server.errors(body)
                if scripted is None:
                    return super()._answer_chat(body)
                status, error = scripted
                with server._lock:
                    server.rejected.append(body)
                self._send(status, {"error": error})

        self._httpd.RequestHandlerClass = Handler


def prompt_of(body: dict) -> str:
    return body["messages"][-1]["content"]
