"""A scripted OpenAI-compatible completions server, run as its own process (``evaluation.server: command``).

It behaves like vLLM's and ``transformers serve``'s endpoints where the evaluation backend depends on them:
``GET /health`` (200 once ready, 503 while not), ``POST /v1/completions`` (``choices[].text``, ``n`` choices,
400 with an OpenAI-style error body for a request it cannot serve), ``/v1/load_lora_adapter`` and
``/v1/unload_lora_adapter`` (vLLM's runtime LoRA endpoints). Every request body is appended to ``--record``.

    python scripted_completions.py --port P [--replies FILE] [--record FILE] [--die-after N] [--once FILE]
        [--never-healthy] [--exit-code C] [--delay S]

Replies: ``--replies`` is a JSON list of texts, handed out in request order (cycled); without it, every
completion is ``Answer: 0``. ``--die-after N`` ends the process abruptly on the N+1-th completion request
(only the first time a ``--once`` marker file does not exist yet).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", default="scripted")
    ap.add_argument("--replies")
    ap.add_argument("--record")
    ap.add_argument("--die-after", type=int)
    ap.add_argument("--once")
    ap.add_argument("--never-healthy", action="store_true")
    ap.add_argument("--exit-code", type=int)
    ap.add_argument("--delay", type=float, default=0.0)
    a = ap.parse_args()
    if a.exit_code is not None:
        print("scripted server: failing at start as asked", flush=True)
        raise SystemExit(a.exit_code)
    replies = json.load(open(a.replies)) if a.replies else ["Answer: 0"]
    dying = a.die_after is not None and not (a.once and os.path.exists(a.once))
    lock = threading.Lock()
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            if self.path == "/health":
                self._send(503 if a.never_healthy else 200, {"status": "loading" if a.never_healthy else "ok"})
            else:
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if a.record:
                with lock, open(a.record, "a") as f:
                    f.write(json.dumps({"path": self.path, **body}) + "\n")
            if self.path in ("/v1/load_lora_adapter", "/v1/unload_lora_adapter"):
                self._send(200, {"status": "ok"})
                return
            if self.path != "/v1/completions":
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            if not isinstance(body.get("prompt"), str) or "model" not in body:
                self._send(400, {"error": {"message": "prompt (a string) and model are required", "type": "invalid_request_error"}})
                return
            n = int(body.get("n", 1))
            with lock:
                first = count[0]
                count[0] += 1
                if dying and count[0] > a.die_after:
                    if a.once:
                        open(a.once, "w").close()
                    os._exit(1)
            texts = [replies[(first * n + j) % len(replies)] for j in range(n)]
            time.sleep(a.delay)
            self._send(200, {
                "id": f"cmpl-{first}", "object": "text_completion", "created": int(time.time()), "model": body["model"],
                "choices": [{"index": j, "text": t, "finish_reason": "stop", "logprobs": None} for j, t in enumerate(texts)],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5 * n, "total_tokens": 10 + 5 * n},
            })

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    print(f"scripted server on {a.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
