"""A polite, bounded image fetcher: one per worker, shared by its download threads.

Every fetch ends with a :class:`Fetched` whose ``status`` is one of ``ok``, ``failed``,
``opted_out`` or ``blocked`` and whose ``reason`` says why; :meth:`Fetcher.fetch` never raises,
whatever the url, the server or the bytes do. Guarantees:

- **one total deadline** per image (``timeout``) covering DNS, connect, TLS, request, headers,
  body, redirects, retries and the wait for robots.txt, for every response framing
  (:mod:`pipeline.deadline`), and a **byte cap** (``max_bytes``, checked against
  ``Content-Length`` and while reading);
- urls made safe to request or refused with the reason (:mod:`pipeline.urls`): bad ports,
  broken IPv6 literals, internationalised names (sent as IDNA), spaces and control characters;
- redirects followed by hand, at most ``max_redirects``, each hop checked like the first;
- only http(s) to **globally routable addresses**, IPv4 addresses embedded in IPv6 forms
  included, refused before connecting (``allow_private`` lifts this for tests and local runs).
  The name is resolved once and the connection goes to the address that was checked (the
  ``Host`` header and TLS name stay the url's), so a DNS answer that changes in between
  (rebinding) reaches nothing;
- 429 and 5xx retried with exponential backoff, honouring ``Retry-After`` (capped);
- at most ``per_host`` connections to one origin at a time, the slot released whatever
  happens; connections kept alive, also after an error page (a short unread body is read to
  its end), at most ``Fetcher.IDLE_PER_POOL`` idle per pool; one DNS lookup per host, not per
  url (:class:`DnsCache`);
- robots.txt per RFC 9309 (:mod:`pipeline.robots`), and ``X-Robots-Tag`` opt-outs (``noai``,
  ``noimageai``, ``noindex``, ``noimageindex``, ``none``, also when scoped to our agent): the
  image is not stored;
- TLS verified against ``ca_pem`` (the text of ``--ca-bundle``), else the bundle named by
  ``SSL_CERT_FILE`` or ``REQUESTS_CA_BUNDLE``, else certifi's; the name checked by OpenSSL in
  the handshake.
"""

from __future__ import annotations

import os
import queue
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http.client import HTTPException, RemoteDisconnected
from urllib.parse import urljoin

import certifi
import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ProtocolError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util.ssl_ import create_urllib3_context

from pipeline import robots as robots_txt
from pipeline.deadline import (Deadline, DeadlineExceeded, Watchdog, WatchedHTTPConnection,
                               WatchedHTTPSConnection, scope)
from pipeline.urls import (BadUrl, Refused, Target, allowed_networks, check_addresses, check_host_name,
                           parse_target)

USER_AGENT = "witbot/0.1 (+https://github.com/wit-clip/wit; image-dataset research crawler; opt out: robots.txt or X-Robots-Tag: noai)"
AGENT_TOKEN = "witbot"
OPT_OUT_TOKENS = {"noai", "noimageai", "noindex", "noimageindex", "none"}
REDIRECTS = (301, 302, 303, 307, 308)
_DIGITS = re.compile(r"[0-9]{1,18}")
_STALE = (RemoteDisconnected, ConnectionResetError, BrokenPipeError)  # a reused connection the server had closed

__all__ = ["AGENT_TOKEN", "BadUrl", "DnsCache", "FetchConfig", "Fetched", "Fetcher", "Refused", "USER_AGENT",
           "parse_content_length", "parse_retry_after", "robots_opt_out"]


@dataclass(frozen=True)
class FetchConfig:
    timeout: float = 10.0  # total seconds per image: DNS to last byte, redirects, retries, robots.txt
    max_bytes: int = 20_000_000
    max_redirects: int = 5
    retries: int = 2
    backoff: float = 0.5
    max_retry_after: float = 10.0
    per_host: int = 16
    per_host_qps: float = 0.0  # requests a second to one origin at most (0: no limit but per_host)
    max_crawl_delay: float = 60.0  # robots.txt Crawl-delay honoured up to this many seconds
    robots: bool = True
    robots_error_ttl: float = 60.0  # seconds an unreachable robots.txt disallows before it is asked again
    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()  # non-public networks allowed all the same (tests: 127.0.0.0/8)
    dns_ttl: float = 300.0  # seconds a host's addresses (and 30 s a failed lookup) are kept
    user_agent: str = USER_AGENT
    ca_pem: str = ""  # PEM certificates to trust instead of the default bundle (--ca-bundle's text)
    hosts: dict[str, str] = field(default_factory=dict)  # host -> address, in place of DNS (--resolve)


@dataclass
class Fetched:
    url: str
    status: str  # ok, failed, opted_out, blocked
    reason: str = ""
    data: bytes = b""
    final_url: str = ""
    attempts: int = 0
    http_status: int | None = None


@dataclass
class _Redirect:
    location: str
    code: int


@dataclass
class _Retry:
    code: int
    retry_after: float | None


class LookupFailed(Exception):
    """DNS gave no usable answer (status ``failed_to_download``)."""


# -- headers ---------------------------------------------------------------------------------------
def parse_content_length(values: list[str]) -> int | None:
    """The declared body length: None when absent; ValueError when it is not ASCII digits or
    the values disagree (a response that lies about its framing is not read)."""
    lengths = {value.strip() for joined in values for value in joined.split(",")}
    if not lengths:
        return None
    if len(lengths) > 1 or not _DIGITS.fullmatch(next(iter(lengths))):
        raise ValueError(f"bad Content-Length {', '.join(sorted(lengths))[:60]!r}")
    return int(next(iter(lengths)))


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date); None when
    the value is absent or unreadable."""
    value = (value or "").strip()
    if _DIGITS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def robots_opt_out(header_values: list[str], agent: str = AGENT_TOKEN) -> str | None:
    """The opt-out token that applies to us in X-Robots-Tag values, if any."""
    for value in header_values:
        scope_, colon, rest = value.partition(":")
        directives = value
        if colon and " " not in scope_.strip() and scope_.strip().lower() not in OPT_OUT_TOKENS:
            if scope_.strip().lower() not in (agent, "*"):
                continue  # addressed to another crawler
            directives = rest
        for token in directives.replace(",", " ").split():
            if token.strip().lower() in OPT_OUT_TOKENS:
                return token.strip().lower()
    return None


def _decode_location(value: str) -> str:
    """http.client reads header bytes as latin-1; servers send UTF-8 in Location."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


# -- DNS -------------------------------------------------------------------------------------------
def _getaddrinfo(host: str, port: int) -> list[str]:
    return [info[4][0].split("%")[0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


class DnsCache:
    """``resolve`` with its answers kept ``ttl`` seconds per (host, port) and its failures
    ``negative_ttl`` seconds: one lookup per host and not per url (``getaddrinfo`` keeps nothing
    unless the machine runs a caching resolver, and a crawl asks for the same hosts all day).
    Lookups run in a small pool so that a caller waits at most ``timeout`` seconds (a resolver
    can take far longer than a fetch's deadline), and concurrent callers of one host share one
    lookup. Rebinding gains nothing from it: connections go to the address that was checked."""

    def __init__(self, resolve, ttl: float = 300.0, negative_ttl: float = 30.0, max_entries: int = 100_000,
                 workers: int = 64) -> None:
        self.resolve, self.ttl, self.negative_ttl, self.max_entries = resolve, ttl, negative_ttl, max_entries
        self.entries: OrderedDict[tuple[str, int], tuple[float, list[str] | tuple]] = OrderedDict()
        self.pending: dict[tuple[str, int], Future] = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="wit-dns")

    def __call__(self, host: str, port: int, timeout: float | None = None) -> list[str]:
        key, now = (host, port), time.monotonic()
        with self.lock:
            hit = self.entries.get(key)
            if hit is None or hit[0] <= now:
                future = self.pending.get(key)
                if future is None:
                    future = self.pending[key] = self.pool.submit(self._lookup, key)
        if hit is not None and hit[0] > now:
            return self._answer(hit[1])
        try:
            return self._answer(future.result(timeout=timeout))
        except FutureTimeout:
            raise DeadlineExceeded(f"deadline exceeded in the DNS lookup of {host}") from None

    @staticmethod
    def _answer(value):
        if isinstance(value, tuple):  # a failure: raised afresh each time
            raise socket.gaierror(*value)
        return value

    def _lookup(self, key: tuple[str, int]):
        try:
            value = self.resolve(*key)
            expires = time.monotonic() + self.ttl
        except (OSError, UnicodeError, ValueError) as exc:
            value = tuple(exc.args) if isinstance(exc, socket.gaierror) else (socket.EAI_NONAME, str(exc))
            expires = time.monotonic() + self.negative_ttl
        with self.lock:
            self.pending.pop(key, None)
            self.entries[key] = (expires, value)
            self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)
        return value


# -- connections -----------------------------------------------------------------------------------
class _QuietWhenFull:
    """A pool keeps at most ``maxsize`` idle connections; one more coming back is closed, without
    urllib3's warning per connection (the number in use is bounded by the origin's slots, not
    by the pool)."""

    def _put_conn(self, conn) -> None:
        pool = self.pool
        if pool is None:  # the pool was closed: urllib3 closes the connection
            return super()._put_conn(conn)
        try:
            pool.put(conn, block=False)  # a connection, or None: the slot of one that failed
        except queue.Full:
            if conn is not None:
                conn.close()


class _Pool(_QuietWhenFull, urllib3.HTTPConnectionPool):
    ConnectionCls = WatchedHTTPConnection


class _TlsPool(_QuietWhenFull, urllib3.HTTPSConnectionPool):
    ConnectionCls = WatchedHTTPSConnection


def tls_context(ca_pem: str = "") -> ssl.SSLContext:
    """Certificates verified and names checked, against ``ca_pem``, else ``SSL_CERT_FILE`` or
    ``REQUESTS_CA_BUNDLE``, else certifi's bundle."""
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    context.check_hostname = True  # names (and IP addresses) checked by OpenSSL during the handshake
    if ca_pem:
        context.load_verify_locations(cadata=ca_pem)
    else:
        bundle = os.environ.get("SSL_CERT_FILE") or os.environ.get("REQUESTS_CA_BUNDLE") or certifi.where()
        context.load_verify_locations(cafile=bundle)
    return context


@dataclass
class _Origin:
    """Connection slots and request pacing of one origin; ``users`` counts fetches holding or
    waiting for a slot, so an idle origin can be forgotten."""

    gate: threading.BoundedSemaphore
    users: int = 0
    next_at: float = 0.0  # monotonic time before which no request of this origin starts
    crawl_delay: float | None = None  # robots.txt's Crawl-delay for us, once known


DRAIN_BYTES = 65_536  # an unread body up to this size (an error page) is read so that its connection is kept
DRAIN_SECONDS = 1.0  # each read of that body waits at most this long (a slow one is not worth its connection)


def _release(response) -> None:
    """Back to its pool: kept alive when the body was read to the end, closed otherwise. A short
    body left unread (a 404 or 5xx page, an empty robots.txt answer) is read first: closing
    the connection instead costs a new one, and over TLS a handshake, for the host's next url.
    The read stays under the fetch's deadline (the watchdog cuts the socket)."""
    try:
        if not response.isclosed():
            _drain_short(response)
        if not response.isclosed():
            response.close()
    finally:
        response.release_conn()


def _drain_short(response) -> None:
    """Read to its end a body of declared length up to ``DRAIN_BYTES``, uncoded; any failure
    leaves the connection to be closed."""
    try:
        declared = parse_content_length(response.headers.getlist("Content-Length"))
    except ValueError:
        return
    if declared is None or declared > DRAIN_BYTES or response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return
    try:
        sock = getattr(response.connection, "sock", None)
        if sock is not None:  # urllib3 sets the timeout again for the connection's next request
            sock.settimeout(min(sock.gettimeout() or DRAIN_SECONDS, DRAIN_SECONDS))
        response.read(decode_content=False)
    except (Urllib3Error, OSError, HTTPException, DeadlineExceeded, ValueError):
        pass  # the connection is closed below


def _failure(exc: BaseException, deadline: Deadline) -> str:
    """The reason for a failed exchange; a connection cut by the watchdog reads as the deadline."""
    if deadline.passed() or isinstance(exc, DeadlineExceeded):
        return "deadline exceeded"
    if isinstance(exc, (Urllib3SSLError, ssl.SSLError)):
        return f"TLS: {exc}"[:300]
    if "timed out" in str(exc).lower():
        return "deadline exceeded"
    return f"{type(exc).__name__}: {exc}"[:300]


class Fetcher:
    """One per worker, shared by its download threads. HTTP through urllib3 connection pools,
    one per (origin, checked address), the least recently used closed past ``MAX_POOLS``."""

    MAX_POOLS = 512
    IDLE_PER_POOL = 4  # idle connections kept per pool: 512 x 4 sockets at most, reached early, so memory stays flat
    MAX_ORIGINS = 20_000  # idle origins' slot counters kept before the oldest are dropped

    def __init__(self, config: FetchConfig, resolve=_getaddrinfo) -> None:
        self.config = config
        if config.hosts:
            fixed, fallback = dict(config.hosts), resolve
            resolve = lambda host, port: [fixed[host]] if host in fixed else fallback(host, port)  # noqa: E731
        self.resolve = DnsCache(resolve, ttl=config.dns_ttl)
        self.allow = allowed_networks(config.allow_networks)
        self.tls = tls_context(config.ca_pem)
        self.pools: OrderedDict[tuple, urllib3.HTTPConnectionPool] = OrderedDict()
        self.origins: OrderedDict[str, _Origin] = OrderedDict()
        self.lock = threading.Lock()
        self.watchdog = Watchdog()
        self.robots = robots_txt.RobotsCache(self._load_robots, error_ttl=config.robots_error_ttl)

    def cache_sizes(self) -> dict[str, int]:
        """Entries in each of the fetcher's bounded tables (for the crawl report)."""
        return {"dns_entries": len(self.resolve.entries), "robots_entries": len(self.robots.entries),
                "connection_pools": len(self.pools), "hosts_tracked": len(self.origins)}

    def close(self) -> None:
        """Stop the helper threads' pools and close every connection."""
        self.robots.close()
        self.resolve.pool.shutdown(wait=False, cancel_futures=True)
        with self.lock:
            pools, self.pools = list(self.pools.values()), OrderedDict()
        for pool in pools:
            pool.close()

    # -- the public call -------------------------------------------------------------------------
    def fetch(self, url: str) -> Fetched:
        deadline = Deadline(self.config.timeout)
        self.watchdog.arm(deadline)
        try:
            with scope(deadline):
                return self._fetch(url, deadline)
        except Exception as exc:  # noqa: BLE001 - the last resort: a fetch never raises
            return Fetched(url if isinstance(url, str) else repr(url), "failed",
                           f"internal error {type(exc).__name__}: {exc}"[:300])
        finally:
            deadline.close()

    def _fetch(self, url: str, deadline: Deadline) -> Fetched:
        config = self.config
        current, attempts, hops = url, 0, 0
        while True:
            final = current if hops else ""
            if deadline.passed():
                return Fetched(url, "failed", "deadline exceeded", final_url=final, attempts=attempts)
            try:
                target = parse_target(current)
                address = self._address(target, deadline)
            except BadUrl as exc:
                return Fetched(url, "failed", f"invalid url: {exc}"[:300], final_url=final, attempts=attempts)
            except Refused as exc:
                return Fetched(url, "blocked", str(exc)[:300], final_url=final, attempts=attempts)
            except (LookupFailed, DeadlineExceeded) as exc:
                return Fetched(url, "failed", str(exc)[:300], final_url=final, attempts=attempts)
            if config.robots:
                verdict = self._robots_verdict(target, deadline)
                if verdict is not None:
                    status, reason = verdict
                    return Fetched(url, status, reason, final_url=final, attempts=attempts)
            attempts += 1
            outcome = self._exchange(target, address, deadline, for_robots=False)
            if isinstance(outcome, Fetched):
                outcome.url, outcome.attempts = url, attempts
                outcome.final_url = outcome.final_url or final
                return outcome
            if isinstance(outcome, _Redirect):
                hops += 1
                if hops > config.max_redirects:
                    return Fetched(url, "failed", f"more than {config.max_redirects} redirects",
                                   final_url=final, attempts=attempts, http_status=outcome.code)
                try:
                    current = urljoin(target.url, outcome.location)
                except ValueError as exc:
                    return Fetched(url, "failed", f"invalid redirect Location: {exc}"[:300], final_url=final,
                                   attempts=attempts, http_status=outcome.code)
                continue
            # a _Retry: 429 or 5xx
            if attempts > config.retries:
                return Fetched(url, "failed", f"HTTP {outcome.code} after {attempts} attempts",
                               final_url=final, attempts=attempts, http_status=outcome.code)
            wait = config.backoff * (2 ** (attempts - 1))
            if outcome.retry_after is not None:
                wait = max(wait, min(outcome.retry_after, config.max_retry_after))
            if wait >= deadline.remaining():
                return Fetched(url, "failed", f"HTTP {outcome.code}; retry would pass the deadline",
                               final_url=final, attempts=attempts, http_status=outcome.code)
            time.sleep(wait)

    # -- steps -----------------------------------------------------------------------------------
    def _address(self, target: Target, deadline: Deadline) -> str:
        """The checked address to connect to (:class:`Refused` when it is not public)."""
        check_host_name(target.host)
        try:
            addresses = self.resolve(target.host, target.port, timeout=deadline.check("before the DNS lookup"))
        except (OSError, UnicodeError) as exc:
            raise LookupFailed(f"DNS lookup failed for {target.host}: {exc}"[:300]) from exc
        return check_addresses(target.host, addresses, self.config.allow_private, self.allow)

    def _robots_verdict(self, target: Target, deadline: Deadline) -> tuple[str, str] | None:
        """None when robots.txt lets us fetch ``target``; else (status, reason)."""
        rules = self.robots.rules(target.origin, deadline.remaining())
        if rules is None:
            return "failed", "deadline exceeded waiting for robots.txt"
        delay = rules.crawl_delay(AGENT_TOKEN)
        if delay:
            self._origin(target.origin, 0).crawl_delay = delay
        if rules.allows(target.url, AGENT_TOKEN):
            return None
        if rules.transient:  # the host failed to answer: not an opt-out, but not fetched either
            return "failed", f"not fetched: {rules.reason}"[:300]
        return "opted_out", "disallowed by robots.txt"

    def _origin(self, origin: str, delta: int) -> _Origin:
        with self.lock:
            state = self.origins.get(origin)
            if state is None:
                state = self.origins[origin] = _Origin(threading.BoundedSemaphore(self.config.per_host))
                if len(self.origins) > self.MAX_ORIGINS:
                    for key in [k for k, s in self.origins.items() if s.users == 0][: len(self.origins) // 4]:
                        del self.origins[key]
            self.origins.move_to_end(origin)
            state.users += delta
            return state

    def _pool(self, target: Target, address: str) -> urllib3.HTTPConnectionPool:
        key = (target.scheme, target.host, target.port, address)
        with self.lock:
            pool = self.pools.get(key)
            if pool is not None:
                self.pools.move_to_end(key)
                return pool
            size = max(1, min(self.config.per_host, self.IDLE_PER_POOL))
            if target.scheme == "https":
                # the name is checked by OpenSSL in the handshake (the context's check_hostname):
                # urllib3's assert_hostname would check it again in Python, walking every name of
                # the certificate (a shared certificate lists hundreds)
                pool = _TlsPool(address, target.port, maxsize=size, server_hostname=target.host,
                                ssl_context=self.tls)
            else:
                pool = _Pool(address, target.port, maxsize=size)
            self.pools[key] = pool
            evicted = [self.pools.popitem(last=False)[1] for _ in range(len(self.pools) - self.MAX_POOLS)]
        for old in evicted:  # its sockets closed outside the lock every download thread takes
            old.close()
        return pool

    def _exchange(self, target: Target, address: str, deadline: Deadline, for_robots: bool):
        """One GET holding one of the origin's connection slots: a :class:`Fetched`, a
        :class:`_Redirect` or a :class:`_Retry`. The slot is released whatever happens."""
        state = self._origin(target.origin, +1)
        try:
            if not state.gate.acquire(timeout=max(0.0, deadline.remaining())):
                return Fetched(target.url, "failed", "deadline exceeded waiting for a host connection slot")
            try:
                if not for_robots and not self._pace(state, deadline):
                    return Fetched(target.url, "failed", "deadline exceeded waiting for the host's request "
                                                         "interval (--per-host-qps, Crawl-delay, Retry-After)")
                outcome = self._request(target, address, deadline, for_robots)
                if isinstance(outcome, _Retry):
                    self._back_off(state, outcome)
                return outcome
            finally:
                state.gate.release()
        finally:
            self._origin(target.origin, -1)

    def _interval(self, state: _Origin) -> float:
        qps = self.config.per_host_qps
        delay = min(state.crawl_delay or 0.0, self.config.max_crawl_delay)
        return max(1.0 / qps if qps > 0 else 0.0, delay)

    def _pace(self, state: _Origin, deadline: Deadline) -> bool:
        """Wait for this origin's next request time and book the one after; False (nothing
        booked) when that time is past the deadline."""
        interval = self._interval(state)
        with self.lock:
            now = time.monotonic()
            start = max(now, state.next_at)
            if start >= deadline.at:
                return False
            if interval > 0 or state.next_at > now:
                state.next_at = start + interval
        if start > now:
            time.sleep(start - now)
        return True

    def _back_off(self, state: _Origin, retry: _Retry) -> None:
        """A 429 or 503 with Retry-After pauses the whole origin, not only this url."""
        if retry.retry_after is not None and retry.code in (429, 503):
            pause = min(retry.retry_after, self.config.max_retry_after)
            with self.lock:
                state.next_at = max(state.next_at, time.monotonic() + pause)

    def _send(self, target: Target, address: str, deadline: Deadline):
        """The response's head. A kept-alive connection the server closed just as we took it
        from the pool (it answered, then hung up without saying ``Connection: close``) fails
        before any byte comes back: the GET is sent once more on a new connection, as browsers
        do."""
        headers = {"Host": target.netloc, "User-Agent": self.config.user_agent, "Accept": "image/*,*/*;q=0.8"}
        for again in (True, False):
            left = deadline.check()
            try:
                return self._pool(target, address).urlopen(
                    "GET", target.target, headers=headers, redirect=False, retries=False,
                    timeout=urllib3.Timeout(connect=max(0.05, min(left, 5.0)), read=max(0.05, left)),
                    preload_content=False, assert_same_host=False)
            except ProtocolError as exc:
                if not (again and isinstance(exc.args[-1], _STALE)):
                    raise

    def _request(self, target: Target, address: str, deadline: Deadline, for_robots: bool):
        try:
            response = self._send(target, address, deadline)
        except (Urllib3Error, OSError, HTTPException, DeadlineExceeded, ValueError) as exc:
            return Fetched(target.url, "failed", _failure(exc, deadline))
        try:
            return self._answer(target, response, deadline, for_robots)
        except (Urllib3Error, OSError, HTTPException, DeadlineExceeded) as exc:
            return Fetched(target.url, "failed", _failure(exc, deadline), http_status=response.status)
        finally:
            _release(response)

    def _answer(self, target: Target, response, deadline: Deadline, for_robots: bool):
        code = response.status
        if code in REDIRECTS:
            location = response.headers.get("Location")
            if not location:
                return Fetched(target.url, "failed", f"redirect {code} without Location", http_status=code)
            return _Redirect(_decode_location(location), code)
        if code == 429 or 500 <= code < 600:
            return _Retry(code, parse_retry_after(response.headers.get("Retry-After")))
        if not 200 <= code < 300:
            return Fetched(target.url, "failed", f"HTTP {code}", http_status=code)
        if for_robots:  # the rules in the first MAX_ROBOTS_BYTES, whatever the length
            return self._read_body(target, response, deadline, robots_txt.MAX_ROBOTS_BYTES, truncate=True)
        opt_out = robots_opt_out(response.headers.getlist("X-Robots-Tag"))
        if opt_out:
            return Fetched(target.url, "opted_out", f"X-Robots-Tag: {opt_out}", final_url=target.url,
                           http_status=code)
        return self._read_body(target, response, deadline, self.config.max_bytes)

    def _read_body(self, target: Target, response, deadline: Deadline, cap: int, truncate: bool = False) -> Fetched:
        """The body, at most ``cap`` bytes: over it, a failure (or, with ``truncate``, its first
        ``cap`` bytes)."""
        code = response.status
        try:
            declared = parse_content_length(response.headers.getlist("Content-Length"))
        except ValueError as exc:
            return Fetched(target.url, "failed", str(exc), http_status=code)
        if declared is not None and declared > cap and not truncate:
            return Fetched(target.url, "failed", f"Content-Length {declared} over the {cap}-byte cap",
                           http_status=code)
        if (declared is not None and declared <= cap
                and response.headers.get("Content-Encoding", "identity").lower() == "identity"):
            data = response.read(decode_content=False)  # one read: the length is declared and under the cap
            if len(data) != declared:
                return Fetched(target.url, "failed", f"body ended after {len(data)} of {declared} bytes",
                               http_status=code)
        else:
            chunks, size = [], 0
            for chunk in response.stream(65536, decode_content=True):
                size += len(chunk)
                if size > cap and truncate:
                    chunks.append(chunk[: cap - size + len(chunk)])
                    break
                if size > cap:
                    return Fetched(target.url, "failed", f"body over the {cap}-byte cap", http_status=code)
                chunks.append(chunk)
            data = b"".join(chunks)
        if deadline.passed():
            return Fetched(target.url, "failed", "deadline exceeded", http_status=code)
        return Fetched(target.url, "ok", data=data, final_url=target.url, http_status=code)

    # -- robots.txt --------------------------------------------------------------------------------
    def _load_robots(self, origin: str) -> robots_txt.Rules:
        """One origin's robots.txt, in a loader thread under its own deadline; redirects
        followed, each hop checked like an image url."""
        deadline = Deadline(self.config.timeout)
        self.watchdog.arm(deadline)
        try:
            with scope(deadline):
                return self._robots_rules(origin + "/robots.txt", deadline)
        finally:
            deadline.close()

    def _robots_rules(self, url: str, deadline: Deadline) -> robots_txt.Rules:
        for _ in range(self.config.max_redirects + 1):
            try:
                target = parse_target(url)
                address = self._address(target, deadline)
            except (BadUrl, Refused, LookupFailed, DeadlineExceeded) as exc:
                return robots_txt.unreachable(str(exc)[:200])
            outcome = self._exchange(target, address, deadline, for_robots=True)
            if isinstance(outcome, _Redirect):
                try:
                    url = urljoin(target.url, outcome.location)
                except ValueError as exc:
                    return robots_txt.unreachable(f"invalid redirect Location: {exc}")
                continue
            if isinstance(outcome, _Retry):
                return robots_txt.rules_from_response(outcome.code, b"")
            if outcome.status != "ok":
                if outcome.http_status is not None and 400 <= outcome.http_status < 500:
                    return robots_txt.rules_from_response(outcome.http_status, b"")
                return robots_txt.unreachable(outcome.reason)
            return robots_txt.rules_from_response(outcome.http_status, outcome.data)
        return robots_txt.Rules("allow_all", f"more than {self.config.max_redirects} redirects: unavailable")
