"""A billing system's webhook endpoint on loopback: a real HTTP server that checks every
request with the Standard Webhooks reference library (`standardwebhooks`, a real peer,
not our own verifier) and answers as scripted — a status, a dropped connection, or no
answer at all (a hung endpoint)."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

DROP = "drop"  # close the connection without an answer
HANG = "hang"  # hold the connection open, answer nothing (until `close`)


@dataclass(frozen=True)
class Received:
    message_id: str
    body: bytes
    payload: dict[str, Any] | None  # what the reference library verified; None if it refused
    answer: int | str


class Receiver:
    """`script` answers requests in order (an int status, `DROP` or `HANG`), and
    `for_invoice` those about one invoice (webhooks go in parallel: arrival order is not
    theirs); when they are used up, every request gets `then`."""

    def __init__(self, secret: str, then: int | str = 200) -> None:
        self.verifier, self.then = Webhook(secret), then
        self.script: list[int | str] = []
        self.for_invoice: dict[str, list[int | str]] = {}
        self.received: list[Received] = []
        self.lock, self.release = threading.Lock(), threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = receiver.verifier.verify(body, headers)
                except WebhookVerificationError:
                    payload = None
                with receiver.lock:
                    invoice = ((payload or {}).get("data") or {}).get("invoice_id")
                    scripted = receiver.for_invoice.get(invoice) or receiver.script
                    answer = scripted.pop(0) if scripted else receiver.then
                    receiver.received.append(Received(headers.get("webhook-id", ""), body, payload, answer))
                if answer == DROP:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if answer == HANG:
                    receiver.release.wait(60)
                    self.close_connection = True
                    return
                self.send_response(int(answer) if payload is not None else 400)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/dunning?token=s3cret"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def payloads(self, kind: str | None = None) -> list[dict[str, Any]]:
        """What was verified and taken (a 2xx answer), optionally of one type."""
        with self.lock:
            taken = [r.payload for r in self.received if r.payload is not None and isinstance(r.answer, int)
                     and 200 <= r.answer < 300]
        return [p for p in taken if kind is None or p["type"] == kind]

    def ids(self) -> list[str]:
        with self.lock:
            return [r.message_id for r in self.received]
