"""A scripted OpenAI-compatible chat server on loopback, for backbone tests.

Replies come from a list (cycled) or a function of the request body; every request body is recorded, refused ones too. It can behave like
OpenAI's reasoning models (``reasoning=True``): a request with ``max_tokens`` or a temperature other than 1
gets the 400 they answer (``unsupported_parameter`` / ``unsupported_value``, with ``param``); and like a
model without structured outputs (``schemas=False``): ``response_format`` of type ``json_schema`` gets a 400.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ScriptedLLM:
    def __init__(self, replies: list[str] | Callable[[dict], str], reasoning: bool = False, schemas: bool = True, finish: str = "stop",
                 count_tokens: bool = False) -> None:
        self.replies = replies
        self.requests: list[dict] = []
        self.refused: list[dict] = []
        self.keys: list[str] = []
        """The Authorization header of every request (what key the client sent)."""
        outer = self

        def refusal(body: dict) -> dict | None:
            if reasoning and "max_tokens" in body:
                return {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
                        "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}
            if reasoning and body.get("temperature", 1) != 1:
                return {"message": f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
                                   "Only the default (1) value is supported.",
                        "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}
            if not schemas and (body.get("response_format") or {}).get("type") == "json_schema":
                return {"message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported with this model.",
                        "type": "invalid_request_error", "param": "response_format", "code": None}
            return None

        def usage(body: dict, text: str) -> dict:
            """100 + 20 tokens a request; with ``count_tokens``, about 4 characters a token, as a tokenizer charges."""
            prompt = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4 if count_tokens else 100
            completion = len(text) // 4 if count_tokens else 20
            return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.keys.append(self.headers.get("Authorization", ""))
                error = refusal(body)
                if error:
                    outer.refused.append(body)
                    self._send(400, {"error": error})
                    return
                outer.requests.append(body)
                replies = outer.replies
                text = replies(body) if callable(replies) else replies[(len(outer.requests) - 1) % len(replies)]
                self._send(200, {
                    "id": f"c{len(outer.requests)}", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}],
                    "usage": usage(body, text),
                })

            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedLLM:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
