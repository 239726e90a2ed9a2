"""A TCP relay in front of a real server that can hang, as a frozen (SIGSTOPped) server
does for its clients — deterministically, whatever the kernel and the client library do.

While hung, what clients send is held (as a stopped server's socket buffers hold it)
and nothing comes back; clients time out, give up and reconnect. On `resume`, all that
was held reaches the server — also from clients that have since closed, whose replies
are then lost: a fetch the server carried out whose answer nobody read, the way a
message ends up in a live dramatiq worker's acknowledgement set without the worker.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
from types import TracebackType


class Hang:
    def __init__(self, upstream_port: int, host: str = "127.0.0.1") -> None:
        self._upstream = (host, upstream_port)
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._running = threading.Event()
        self._running.set()
        self._closed = threading.Event()
        self.lost_replies = 0  # connections whose client had gone when their server answered
        self.lost: list[bytes] = []  # what the server answered them
        self._marker: re.Pattern[bytes] | None = None
        self.hung = threading.Event()
        threading.Thread(target=self._accept, name="hang-accept", daemon=True).start()

    def hang(self) -> None:
        self._running.clear()

    def hang_at(self, marker: re.Pattern[bytes]) -> threading.Event:
        """Hang as soon as a client sends what `marker` matches (that request held too);
        the event is set then."""
        self._marker, self.hung = marker, threading.Event()
        return self.hung

    def resume(self) -> None:
        self._running.set()

    def close(self) -> None:
        self._closed.set()
        self._running.set()
        self._listener.close()

    def __enter__(self) -> Hang:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), name="hang-relay", daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        held = b""  # from the client, not yet passed on
        lost = b""  # from the server, its client gone
        client_gone = ended = answered = False
        try:
            while not self._closed.is_set():
                running = self._running.is_set()
                if running and upstream is None:
                    upstream = socket.create_connection(self._upstream)
                if running and held and upstream is not None:
                    upstream.sendall(held)
                    held = b""
                if running and client_gone and not held and upstream is not None and not ended:
                    upstream.shutdown(socket.SHUT_WR)  # the server reads all it was sent, then the end
                    ended = True
                watched = ([] if client_gone else [client]) + ([upstream] if running and upstream else [])
                if not watched:  # hung, its client gone: wait to pass on what it sent
                    time.sleep(0.05)
                    continue
                readable, _, _ = select.select(watched, [], [], 0.05)
                if client in readable:
                    data = client.recv(65536)
                    if self._marker is not None and self._marker.search(data):
                        self._marker = None
                        self.hang()
                        self.hung.set()
                    held += data
                    client_gone = not data
                if upstream is not None and upstream in readable:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    if client_gone:
                        answered, lost = True, lost + data
                    else:
                        client.sendall(data)
        except OSError:
            return
        finally:
            if answered:
                self.lost_replies += 1
                self.lost.append(lost)
            client.close()
            if upstream is not None:
                upstream.close()
