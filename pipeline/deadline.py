"""One deadline per fetch that no server can stretch.

A socket timeout bounds each read, not a download: a server that sends a byte every quarter
second (in its headers, its TLS handshake or its body) never trips it. So every socket a fetch
opens or reuses is registered with the fetch's :class:`Deadline`, and one :class:`Watchdog`
thread per worker shuts those sockets down when the deadline passes; the read in progress then
ends at once, whatever the response's framing (keep-alive, ``Connection: close``, HTTP/1.0,
chunked or no length at all: ``http.client`` hands the socket to the response for the last
three, so a hook on the connection's ``sock`` misses them).

The registration is a duplicate of the socket's descriptor taken when the connection is made
(before any TLS handshake) or reused: shutting it down ends the connection for every
descriptor of it, and closing it when the fetch ends touches nothing the pool keeps.

:class:`WatchedHTTPConnection` and :class:`WatchedHTTPSConnection` are urllib3's connections
that register themselves with the deadline of the thread that uses them (:func:`scope`).
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
from contextlib import contextmanager

from urllib3.connection import HTTPConnection, HTTPSConnection

_current = threading.local()


class DeadlineExceeded(Exception):
    """The fetch's total time ran out."""


class Deadline:
    """The end time of one fetch and the sockets it has in use."""

    def __init__(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds
        self.expired = False
        self.closed = False
        self._sockets: dict[int, socket.socket] = {}
        self._lock = threading.Lock()

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.expired or time.monotonic() >= self.at

    def check(self, what: str = "") -> float:
        """The seconds left; :class:`DeadlineExceeded` when none are."""
        left = self.remaining()
        if left <= 0 or self.expired:
            raise DeadlineExceeded(f"deadline exceeded{' ' + what if what else ''}")
        return left

    def watch(self, sock: socket.socket) -> None:
        try:
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except OSError:
            return  # already closed: nothing to cut
        with self._lock:
            if self.closed:
                duplicate.close()
                return
            old = self._sockets.pop(sock.fileno(), None)
            if old is not None:
                old.close()
            self._sockets[sock.fileno()] = duplicate
            if self.expired:
                _cut(duplicate)

    def expire(self) -> None:
        """Called by the watchdog: cut every socket of this fetch."""
        with self._lock:
            if self.closed:
                return
            self.expired = True
            for duplicate in self._sockets.values():
                _cut(duplicate)

    def close(self) -> None:
        """The fetch is over: the watchdog leaves its sockets alone from now on."""
        with self._lock:
            self.closed = True
            sockets, self._sockets = self._sockets, {}
        for duplicate in sockets.values():
            duplicate.close()


def _cut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Watchdog:
    """One thread that expires deadlines when their time comes."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._ids = itertools.count()
        self._wake = threading.Condition()
        threading.Thread(target=self._run, name="wit-fetch-watchdog", daemon=True).start()

    def arm(self, deadline: Deadline) -> None:
        with self._wake:
            token = next(self._ids)
            heapq.heappush(self._heap, (deadline.at, token, deadline))
            if self._heap[0][1] == token:  # only an earlier deadline needs the thread awake
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                at, _, deadline = self._heap[0]
                wait = at - time.monotonic()
                if wait > 0:
                    self._wake.wait(timeout=wait)
                    continue
                heapq.heappop(self._heap)
            deadline.expire()  # a closed deadline ignores this


@contextmanager
def scope(deadline: Deadline):
    """Connections used by this thread inside the block register with ``deadline``."""
    previous = getattr(_current, "deadline", None)
    _current.deadline = deadline
    try:
        yield deadline
    finally:
        _current.deadline = previous


def _watch(sock) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None and sock is not None:
        deadline.watch(sock)


class WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)
        return sock

    def request(self, *args, **kwargs) -> None:  # a reused keep-alive connection
        _watch(self.sock)
        super().request(*args, **kwargs)


class WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch(sock)  # before the TLS handshake, which a server can drip too
        return sock

    def request(self, *args, **kwargs) -> None:
        _watch(self.sock)
        super().request(*args, **kwargs)
