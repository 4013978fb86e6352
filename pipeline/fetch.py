"""A polite, bounded image fetcher: one per worker, shared by its download threads.

Every fetch ends with a :class:`Fetched` whose ``status`` is one of ``ok``, ``failed``,
``opted_out`` or ``blocked`` and whose ``reason`` says why. Guarantees:

- a **total deadline** per image (not per socket read: a server dripping bytes or hanging is
  cut off at ``timeout`` seconds), and a **byte cap** (``max_bytes``, checked against
  ``Content-Length`` and while reading);
- redirects followed by hand, at most ``max_redirects``, each hop checked like the first;
- only http(s); hosts resolving to loopback, private, link-local, multicast, reserved or
  unspecified addresses, and cloud metadata names, are **refused before connecting**
  (``allow_private`` lifts this for tests and local runs). The check resolves the name once and
  the connection goes to the address it checked (the ``Host`` header and TLS name stay the
  url's), so a DNS answer that changes in between (rebinding) reaches nothing;
- 429 and 5xx retried with exponential backoff, honouring ``Retry-After`` (capped);
- at most ``per_host`` connections to one host at a time; one DNS lookup per host, not per url
  (:class:`DnsCache`);
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
from collections import OrderedDict
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import certifi
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import TimeoutError as Urllib3Timeout

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
    dns_ttl: float = 300.0  # seconds a host's addresses (and 30 s a failed lookup) are kept
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


def _getaddrinfo(host: str, port: int) -> list[str]:
    return [info[4][0].split("%")[0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class DnsCache:
    """``resolve`` with its answers kept ``ttl`` seconds per (host, port) and its failures
    ``negative_ttl`` seconds: one lookup per host and not per url (``getaddrinfo`` keeps nothing
    unless the machine runs a caching resolver, and a crawl asks for the same hosts all day).
    Rebinding gains nothing from it: connections go to the address that was checked."""

    def __init__(self, resolve, ttl: float = 300.0, negative_ttl: float = 30.0, max_entries: int = 100_000) -> None:
        self.resolve, self.ttl, self.negative_ttl, self.max_entries = resolve, ttl, negative_ttl, max_entries
        self.entries: OrderedDict[tuple[str, int], tuple[float, list[str] | tuple]] = OrderedDict()
        self.lock = threading.Lock()

    def __call__(self, host: str, port: int) -> list[str]:
        key, now = (host, port), time.monotonic()
        with self.lock:
            hit = self.entries.get(key)
        if hit is not None and hit[0] > now:
            if isinstance(hit[1], tuple):  # a failure: raised afresh each time
                raise socket.gaierror(*hit[1])
            return hit[1]
        try:
            answer = self.resolve(host, port)
        except (socket.gaierror, UnicodeError) as exc:
            self._keep(key, now + self.negative_ttl, tuple(exc.args) if isinstance(exc, socket.gaierror) else
                       (socket.EAI_NONAME, str(exc)))
            raise
        self._keep(key, now + self.ttl, answer)
        return answer

    def _keep(self, key: tuple[str, int], expires: float, value) -> None:
        with self.lock:
            self.entries[key] = (expires, value)
            self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)


def check_address(url: str, allow_private: bool, resolve=_getaddrinfo) -> str:
    """Raise :class:`Refused` for a url we must not connect to; otherwise return the address to
    connect to: the one checked (``allow_private`` keeps the resolution, lifts the refusal)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Refused(f"scheme {parts.scheme!r} is not http(s)")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise Refused("no host")
    if host in METADATA_HOSTS:
        raise Refused(f"cloud metadata host {host}")
    try:
        addresses = resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError) as exc:
        raise ConnectionError(f"DNS lookup failed for {host}: {exc}") from exc
    if not addresses:
        raise ConnectionError(f"DNS lookup for {host} returned no address")
    for text in [] if allow_private else addresses:
        address = ipaddress.ip_address(text)
        if (address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
                or address.is_reserved or address.is_unspecified):
            raise Refused(f"{host} resolves to a non-public address {address}")
    return addresses[0]


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
    """Back to its pool: kept alive when the body was read to the end, closed otherwise."""
    if not response.isclosed():
        response.close()
    response.release_conn()
    gate = getattr(response, "_wit_gate", None)
    if gate is not None:
        response._wit_gate = None
        gate.release()


class Fetcher:
    """One per worker, shared by its download threads. HTTP through urllib3 connection pools,
    one per (scheme, host, port, checked address), the least recently used closed past
    ``MAX_POOLS``."""

    MAX_POOLS = 512

    def __init__(self, config: FetchConfig, resolve=_getaddrinfo) -> None:
        self.config = config
        # host, port -> addresses (the system resolver; tests give their own), answers cached per host
        self.resolve = DnsCache(resolve, ttl=config.dns_ttl)
        self.pools: OrderedDict[tuple, urllib3.HTTPConnectionPool] = OrderedDict()
        self.hosts: dict[str, _HostState] = {}
        self.lock = threading.Lock()
        self.watchdog = Watchdog()

    def _host(self, netloc: str) -> _HostState:
        with self.lock:
            state = self.hosts.get(netloc)
            if state is None:
                state = self.hosts[netloc] = _HostState(threading.BoundedSemaphore(self.config.per_host))
            return state

    def _pool(self, scheme: str, host: str, port: int, address: str) -> urllib3.HTTPConnectionPool:
        key = (scheme, host, port, address)
        with self.lock:
            pool = self.pools.get(key)
            if pool is not None:
                self.pools.move_to_end(key)
                return pool
            size = max(self.config.per_host, 1)
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(address, port, maxsize=size, server_hostname=host,
                                                   assert_hostname=host, cert_reqs="CERT_REQUIRED",
                                                   ca_certs=certifi.where())
            else:
                pool = urllib3.HTTPConnectionPool(address, port, maxsize=size)
            self.pools[key] = pool
            while len(self.pools) > self.MAX_POOLS:
                _, old = self.pools.popitem(last=False)
                old.close()
            return pool

    def _request(self, url: str, address: str, timeout: urllib3.Timeout):
        """One GET, no redirects followed, body not read: the response."""
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        pool = self._pool(parts.scheme, (parts.hostname or "").lower(), port, address)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {"Host": parts.netloc.rsplit("@", 1)[-1], "User-Agent": self.config.user_agent,
                   "Accept": "image/*,*/*;q=0.8"}
        return pool.urlopen("GET", target, headers=headers, redirect=False, retries=False, timeout=timeout,
                            preload_content=False, assert_same_host=False)

    def _allowed_by_robots(self, url: str, address: str, deadline: float) -> bool:
        parts = urlsplit(url)
        state = self._host(f"{parts.scheme}://{parts.netloc}")
        with state.robots_lock:
            if not state.robots_loaded:
                state.robots = self._load_robots(f"{parts.scheme}://{parts.netloc}/robots.txt", address, deadline)
                state.robots_loaded = True
        return state.robots is None or state.robots.can_fetch(AGENT_TOKEN, url)

    def _load_robots(self, robots_url: str, address: str,
                     deadline: float) -> urllib.robotparser.RobotFileParser | None:
        """None means 'no rules' (404 or unreachable robots.txt: crawlers treat that as allowed,
        except a 401/403, which means everything is disallowed). Redirects are followed, each
        hop checked like an image url."""
        parser = urllib.robotparser.RobotFileParser(robots_url)
        current = robots_url
        for _ in range(self.config.max_redirects + 1):
            remaining = max(0.1, min(5.0, deadline - time.monotonic()))
            try:
                response = self._request(current, address, urllib3.Timeout(connect=remaining, read=remaining))
                body = response.read(decode_content=True, amt=512_000)
                _release(response)
            except (Urllib3Error, OSError):
                return None
            code = response.status
            if code in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                current = urljoin(current, response.headers["Location"])
                try:
                    address = check_address(current, self.config.allow_private, self.resolve)
                except (Refused, ConnectionError):
                    return None
                continue
            if code in (401, 403):
                parser.disallow_all = True
                return parser
            if code >= 400:
                return None
            parser.parse(body.decode("utf-8", "replace").splitlines())
            return parser
        return None

    def fetch(self, url: str) -> Fetched:
        config = self.config
        deadline = time.monotonic() + config.timeout
        current, attempts, hops = url, 0, 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return Fetched(url, "failed", "deadline exceeded", attempts=attempts)
            try:
                address = check_address(current, config.allow_private, self.resolve)
            except Refused as exc:
                return Fetched(url, "blocked", str(exc), final_url=current, attempts=attempts)
            except ConnectionError as exc:
                return Fetched(url, "failed", str(exc), attempts=attempts)
            if config.robots and not self._allowed_by_robots(current, address, deadline):
                return Fetched(url, "opted_out", "disallowed by robots.txt", final_url=current, attempts=attempts)
            attempts += 1
            result = self._get_once(current, address, deadline)
            if isinstance(result, Fetched):
                result.url, result.attempts = url, attempts
                return result
            response = result
            code = response.status
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

    def _get_once(self, url: str, address: str, deadline: float):
        state = self._host(urlsplit(url).netloc)
        remaining = deadline - time.monotonic()
        if not state.gate.acquire(timeout=max(0.0, remaining)):
            return Fetched(url, "failed", "deadline exceeded waiting for a host connection slot")
        try:
            remaining = deadline - time.monotonic()
            response = self._request(url, address, urllib3.Timeout(connect=max(0.05, min(remaining, 5.0)),
                                                                   read=max(0.05, remaining)))
            response._wit_gate = state.gate  # released when the body is read or dropped
            return response
        except Urllib3Timeout:
            state.gate.release()
            return Fetched(url, "failed", "deadline exceeded")
        except (Urllib3Error, OSError) as exc:
            state.gate.release()
            return Fetched(url, "failed", f"{type(exc).__name__}: {exc}"[:300])

    def _read_body(self, url: str, final: str, response, deadline: float, attempts: int) -> Fetched:
        config = self.config
        sock = getattr(response.connection, "sock", None)
        token = self.watchdog.arm(deadline, sock) if sock is not None else None
        try:
            opt_out = robots_opt_out(response.headers.getlist("X-Robots-Tag"))
            if opt_out:
                return Fetched(url, "opted_out", f"X-Robots-Tag: {opt_out}", final_url=final, attempts=attempts,
                               http_status=response.status)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > config.max_bytes:
                return Fetched(url, "failed", f"Content-Length {declared} over the {config.max_bytes}-byte cap",
                               attempts=attempts, http_status=response.status)
            if declared.isdigit() and response.headers.get("Content-Encoding", "identity").lower() == "identity":
                data = response.read(decode_content=False)  # one read: the length is declared and under the cap
                if len(data) != int(declared):
                    return Fetched(url, "failed", f"body ended after {len(data)} of {declared} bytes",
                                   attempts=attempts)
                return Fetched(url, "ok", data=data, final_url=final, attempts=attempts, http_status=response.status)
            chunks, size = [], 0
            for chunk in response.stream(65536, decode_content=True):
                size += len(chunk)
                if size > config.max_bytes:
                    return Fetched(url, "failed", f"body over the {config.max_bytes}-byte cap", attempts=attempts)
                if time.monotonic() > deadline:
                    return Fetched(url, "failed", "deadline exceeded", attempts=attempts)
                chunks.append(chunk)
            return Fetched(url, "ok", data=b"".join(chunks), final_url=final, attempts=attempts,
                           http_status=response.status)
        except (Urllib3Error, OSError) as exc:
            late = time.monotonic() >= deadline or "timed out" in str(exc).lower()
            text = "deadline exceeded" if late else f"{type(exc).__name__}: {exc}"[:300]
            return Fetched(url, "failed", text, attempts=attempts)
        finally:
            if token is not None:
                self.watchdog.disarm(token)
            _release(response)
