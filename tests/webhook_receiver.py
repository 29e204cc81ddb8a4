"""A webhook receiver on 127.0.0.1 that checks every request with the ``standardwebhooks`` reference library.

It answers from a rule (default 204), can go down and come back on the same port, and keeps what it accepted in
arrival order, so tests can check signatures, ids and per-member order the way a real receiver would see them.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    """One request as it arrived: headers (lower-case names), body, parsed payload, and whether it verified."""

    headers: dict[str, str]
    body: bytes
    payload: dict[str, Any]
    verified: bool
    status: int

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


class VerifyingReceiver:
    """``answer(payload, attempt_number)`` decides each status; ``attempt_number`` counts requests per webhook-id."""

    def __init__(self, secret: str, path: str = "/hooks/syncd") -> None:
        self.verifier = Webhook(secret)
        self.received: list[Received] = []
        self.answer: Callable[[dict[str, Any], int], int] = lambda payload, attempt: 204
        self.lock = threading.Lock()
        self.port = 0
        self.path = path
        self.server: ThreadingHTTPServer | None = None
        self.up()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def up(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    receiver.verifier.verify(body, headers)
                    verified = True
                except WebhookVerificationError:
                    verified = False
                payload = json.loads(body)
                with receiver.lock:
                    attempt = 1 + sum(1 for r in receiver.received if r.id == headers.get("webhook-id"))
                    status = receiver.answer(payload, attempt) if verified else 400
                    receiver.received.append(Received(headers, body, payload, verified, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def down(self) -> None:
        """Stop answering: connections to the port are refused until :meth:`up`."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def accepted(self) -> list[Received]:
        """The requests answered 2xx, in arrival order."""
        with self.lock:
            return [r for r in self.received if 200 <= r.status < 300]
