"""A polite, bounded image fetcher: one per worker, shared by its download threads.

Every fetch ends with a :class:`Fetched` whose ``status`` is one of ``ok``, ``failed``,
``opted_out`` or ``blocked`` and whose ``reason`` says why. Guarantees:

- a **total deadline** per image (not per socket read: a server dripping bytes or hanging is
  cut off at ``timeout`` seconds), and a **byte cap** (``max_bytes``, checked against
  ``Content-Length`` and while reading);
- redirects followed by hand, at most ``max_redirects``, each hop checked like the first;
- only http(s); hosts resolving to loopback, private, link-local, multicast, reserved or
  unspecified addresses, and cloud metadata names, are **refused before connecting**
  (``allow_private`` lifts this for tests and local runs). The check resolves the name itself;
  the connection resolves it again, so a DNS answer that changes between the two (rebinding)
  is not caught;
- 429 and 5xx retried with exponential backoff, honouring ``Retry-After`` (capped);
- at most ``per_host`` connections to one host at a time;
- ``robots.txt`` of the image host fetched once, cached, and honoured for our User-Agent;
  ``X-Robots-Tag`` opt-outs (``noai``, ``noimageai``, ``noindex``, ``noimageindex``, ``none``,
  also when scoped to our agent) honoured: the image is not stored.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import urllib.robotparser
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import requests

USER_AGENT = "witbot/0.1 (+https://github.com/wit-clip/wit; image-dataset research crawler; opt out: robots.txt or X-Robots-Tag: noai)"
AGENT_TOKEN = "witbot"
OPT_OUT_TOKENS = {"noai", "noimageai", "noindex", "noimageindex", "none"}
METADATA_HOSTS = {"metadata.google.internal", "metadata", "metadata.goog", "instance-data", "169.254.169.254"}


@dataclass(frozen=True)
class FetchConfig:
    timeout: float = 10.0  # total seconds per image, redirects and retries included
    max_bytes: int = 20_000_000
    max_redirects: int = 5
    retries: int = 2
    backoff: float = 0.5
    max_retry_after: float = 10.0
    per_host: int = 16
    robots: bool = True
    allow_private: bool = False
    user_agent: str = USER_AGENT


@dataclass
class Fetched:
    url: str
    status: str  # ok, failed, opted_out, blocked
    reason: str = ""
    data: bytes = b""
    final_url: str = ""
    attempts: int = 0
    http_status: int | None = None


class Refused(Exception):
    """The address or the scheme is not one we fetch from (status ``blocked``)."""


def check_address(url: str, allow_private: bool) -> None:
    """Raise :class:`Refused` for a url we must not connect to."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused(f"scheme {parts.scheme!r} is not http(s)")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise Refused("no host")
    if host in METADATA_HOSTS:
        raise Refused(f"cloud metadata host {host}")
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConnectionError(f"DNS lookup failed for {host}: {exc}") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
                or address.is_reserved or address.is_unspecified):
            raise Refused(f"{host} resolves to a non-public address {address}")


def robots_opt_out(header_values: list[str], agent: str = AGENT_TOKEN) -> str | None:
    """The opt-out token that applies to us in X-Robots-Tag values, if any."""
    for value in header_values:
        scope, colon, rest = value.partition(":")
        directives = value
        if colon and " " not in scope.strip() and scope.strip().lower() not in OPT_OUT_TOKENS:
            if scope.strip().lower() not in (agent, "*"):
                continue  # addressed to another crawler
            directives = rest
        for token in directives.replace(",", " ").split():
            if token.strip().lower() in OPT_OUT_TOKENS:
                return token.strip().lower()
    return None


@dataclass
class _HostState:
    gate: threading.BoundedSemaphore
    robots: urllib.robotparser.RobotFileParser | None = None
    robots_lock: threading.Lock = field(default_factory=threading.Lock)
    robots_loaded: bool = False


class Watchdog:
    """One thread that cuts connections at their deadline. A socket read timeout cannot stop a
    server that drips a byte now and then (each read succeeds), and urllib3 keeps reading until
    its chunk is full; shutting the socket down from here ends the read at once."""

    def __init__(self) -> None:
        import heapq

        self._heapq = heapq
        self._heap: list[tuple[float, int, object]] = []
        self._cancelled: set[int] = set()
        self._ids = iter(range(1 << 62))
        self._wake = threading.Condition()
        threading.Thread(target=self._run, name="wit-fetch-watchdog", daemon=True).start()

    def arm(self, deadline: float, sock) -> int:
        with self._wake:
            token = next(self._ids)
            self._heapq.heappush(self._heap, (deadline, token, sock))
            if self._heap[0][1] == token:  # only an earlier deadline needs the thread awake
                self._wake.notify()
            return token

    def disarm(self, token: int) -> None:
        with self._wake:
            self._cancelled.add(token)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap:
                    self._wake.wait()
                deadline, token, sock = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._wake.wait(timeout=wait)
                    continue
                self._heapq.heappop(self._heap)
                if token in self._cancelled:
                    self._cancelled.discard(token)
                    continue
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _release(response) -> None:
    response.close()
    gate = getattr(response, "_wit_gate", None)
    if gate is not None:
        response._wit_gate = None
        gate.release()


class Fetcher:
    def __init__(self, config: FetchConfig) -> None:
        self.config = config
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=256, pool_maxsize=max(config.per_host, 16),
                                                max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = config.user_agent
        self.hosts: dict[str, _HostState] = {}
        self.lock = threading.Lock()
        self.watchdog = Watchdog()

    def _host(self, netloc: str) -> _HostState:
        with self.lock:
            state = self.hosts.get(netloc)
            if state is None:
                state = self.hosts[netloc] = _HostState(threading.BoundedSemaphore(self.config.per_host))
            return state

    def _allowed_by_robots(self, url: str, deadline: float) -> bool:
        parts = urlsplit(url)
        state = self._host(f"{parts.scheme}://{parts.netloc}")
        with state.robots_lock:
            if not state.robots_loaded:
                state.robots = self._load_robots(f"{parts.scheme}://{parts.netloc}/robots.txt", deadline)
                state.robots_loaded = True
        return state.robots is None or state.robots.can_fetch(AGENT_TOKEN, url)

    def _load_robots(self, robots_url: str, deadline: float) -> urllib.robotparser.RobotFileParser | None:
        """None means 'no rules' (404 or unreachable robots.txt: crawlers treat that as allowed,
        except a 401/403, which means everything is disallowed)."""
        parser = urllib.robotparser.RobotFileParser(robots_url)
        try:
            response = self.session.get(robots_url, timeout=max(0.1, min(5.0, deadline - time.monotonic())),
                                        allow_redirects=True)
        except requests.RequestException:
            return None
        if response.status_code in (401, 403):
            parser.disallow_all = True
            return parser
        if response.status_code >= 400:
            return None
        parser.parse(response.text.splitlines())
        return parser

    def fetch(self, url: str) -> Fetched:
        config = self.config
        deadline = time.monotonic() + config.timeout
        current, attempts, hops = url, 0, 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Fetched(url, "failed", "deadline exceeded", attempts=attempts)
            try:
                check_address(current, config.allow_private)
            except Refused as exc:
                return Fetched(url, "blocked", str(exc), final_url=current, attempts=attempts)
            except ConnectionError as exc:
                return Fetched(url, "failed", str(exc), attempts=attempts)
            if config.robots and not self._allowed_by_robots(current, deadline):
                return Fetched(url, "opted_out", "disallowed by robots.txt", final_url=current, attempts=attempts)
            attempts += 1
            result = self._get_once(current, deadline)
            if isinstance(result, Fetched):
                result.url, result.attempts = url, attempts
                return result
            response = result
            code = response.status_code
            if code in (301, 302, 303, 307, 308):
                _release(response)
                hops += 1
                if hops > config.max_redirects:
                    return Fetched(url, "failed", f"more than {config.max_redirects} redirects", attempts=attempts,
                                   http_status=code)
                location = response.headers.get("Location")
                if not location:
                    return Fetched(url, "failed", f"redirect {code} without Location", attempts=attempts)
                current = urljoin(current, location)
                continue
            if code == 429 or code >= 500:
                _release(response)
                if attempts > config.retries:
                    return Fetched(url, "failed", f"HTTP {code} after {attempts} attempts", attempts=attempts,
                                   http_status=code)
                wait = config.backoff * (2 ** (attempts - 1))
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.strip().isdigit():
                    wait = max(wait, min(float(retry_after), config.max_retry_after))
                if time.monotonic() + wait >= deadline:
                    return Fetched(url, "failed", f"HTTP {code}; retry would pass the deadline", attempts=attempts,
                                   http_status=code)
                time.sleep(wait)
                continue
            if code >= 400:
                _release(response)
                return Fetched(url, "failed", f"HTTP {code}", attempts=attempts, http_status=code)
            return self._read_body(url, current, response, deadline, attempts)

    def _get_once(self, url: str, deadline: float):
        state = self._host(urlsplit(url).netloc)
        remaining = deadline - time.monotonic()
        if not state.gate.acquire(timeout=max(0.0, remaining)):
            return Fetched(url, "failed", "deadline exceeded waiting for a host connection slot")
        try:
            remaining = deadline - time.monotonic()
            response = self.session.get(url, stream=True, allow_redirects=False,
                                        timeout=(max(0.05, min(remaining, 5.0)), max(0.05, remaining)))
            response._wit_gate = state.gate  # released when the body is read or dropped
            return response
        except requests.Timeout:
            state.gate.release()
            return Fetched(url, "failed", "deadline exceeded")
        except requests.RequestException as exc:
            state.gate.release()
            return Fetched(url, "failed", f"{type(exc).__name__}: {exc}"[:300])

    def _read_body(self, url: str, final: str, response, deadline: float, attempts: int) -> Fetched:
        config = self.config
        sock = getattr(getattr(response.raw, "_connection", None), "sock", None)
        token = self.watchdog.arm(deadline, sock) if sock is not None else None
        try:
            opt_out = robots_opt_out(response.raw.headers.getlist("X-Robots-Tag")
                                     if hasattr(response.raw.headers, "getlist") else
                                     [response.headers.get("X-Robots-Tag", "")])
            if opt_out:
                return Fetched(url, "opted_out", f"X-Robots-Tag: {opt_out}", final_url=final, attempts=attempts,
                               http_status=response.status_code)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > config.max_bytes:
                return Fetched(url, "failed", f"Content-Length {declared} over the {config.max_bytes}-byte cap",
                               attempts=attempts, http_status=response.status_code)
            chunks, size = [], 0
            for chunk in response.iter_content(65536):
                size += len(chunk)
                if size > config.max_bytes:
                    return Fetched(url, "failed", f"body over the {config.max_bytes}-byte cap", attempts=attempts)
                if time.monotonic() > deadline:
                    return Fetched(url, "failed", "deadline exceeded", attempts=attempts)
                chunks.append(chunk)
            return Fetched(url, "ok", data=b"".join(chunks), final_url=final, attempts=attempts,
                           http_status=response.status_code)
        except (requests.RequestException, OSError) as exc:
            late = time.monotonic() >= deadline or "timed out" in str(exc).lower()
            text = "deadline exceeded" if late else f"{type(exc).__name__}: {exc}"[:300]
            return Fetched(url, "failed", text, attempts=attempts)
        finally:
            if token is not None:
                self.watchdog.disarm(token)
            _release(response)
