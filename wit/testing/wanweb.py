"""A web shaped like the real one, on loopback: many hosts, TLS, latency, failures.

The crawl's speed on one instant, never-failing host says little about a real crawl, where
almost every image host speaks TLS, answers come after 50 ms to seconds, a third of the urls
of a re-crawl fail and the urls spread over many hosts. This server gives the crawl benchmark
and tests such a web, the same for every tool that crawls it:

- ``hosts`` hosts, each its own address ``127.1.x.y`` (a separate host for robots.txt, per-host
  caps and connection pools), all on one port, served by one asyncio process;
- https with a test CA (:class:`wit.testing.tls.TestCA`; one certificate naming every host's
  address), or plain http;
- per-request latency from a log-normal law (median ``--latency-ms``, ``--latency-sigma``;
  the defaults give a p99 of about 1.5 s), before the status line;
- a failure mix by url (``--fates``): ``ok``, ``not_found`` (404), ``server_error`` (500),
  ``too_many_requests`` (429 with ``Retry-After``), ``hang`` (no answer), ``slow_body`` (the
  body a few bytes a second), ``reset`` (the connection cut after the headers), ``dead_host``
  (an address nobody listens on: refused at once, as a dead host or a DNS failure is). No
  real DNS is used, so nothing leaves the machine.

Everything is a function of ``(seed, url number)``: every tool meets the same fate and the same
latency on the same url. :func:`url_list` writes the urls and their fates.

    python -m wit.testing.wanweb --root PHOTOS --urls 6000 --out DIR [--hosts 200] [--tls]
      -> DIR/urls.parquet (url, caption, fate), DIR/ca.pem; prints {"port": ..., "ca": ...}
         on one line, then serves until SIGTERM
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import random
import signal
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path

FATES = ("ok", "not_found", "server_error", "too_many_requests", "hang", "slow_body", "reset", "dead_host")
DEFAULT_MIX = {"ok": 0.74, "not_found": 0.08, "server_error": 0.04, "too_many_requests": 0.03, "hang": 0.03,
               "slow_body": 0.02, "reset": 0.02, "dead_host": 0.04}


@dataclass
class WanConfig:
    hosts: int = 200
    seed: int = 0
    tls: bool = True
    latency_ms: float = 100.0  # median
    latency_sigma: float = 1.16  # log-normal sigma: p99 = median * e^(2.326 sigma) ~ 1.5 s
    latency_cap_s: float = 8.0
    slow_body_seconds: float = 30.0
    unique: bool = False  # make every url's bytes distinct (a JPEG comment with its number)
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))

    def __post_init__(self) -> None:
        unknown = set(self.mix) - set(FATES)
        if unknown:
            raise ValueError(f"unknown fates {sorted(unknown)}; known: {', '.join(FATES)}")
        if not 1 <= self.hosts <= 65_000:
            raise ValueError("hosts must be between 1 and 65,000")


def _unit(seed: int, *parts) -> float:
    """A number in [0, 1) fixed by the seed and the parts."""
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def fate_of(config: WanConfig, number: int) -> str:
    point, total = _unit(config.seed, "fate", number), 0.0
    weights = sum(config.mix.values())
    for fate in FATES:
        total += config.mix.get(fate, 0.0) / weights
        if point < total:
            return fate
    return "ok"


def latency_of(config: WanConfig, number: int) -> float:
    """Seconds before the answer to url ``number`` starts (the same for every request of it)."""
    u1 = max(_unit(config.seed, "lat1", number), 1e-12)
    u2 = _unit(config.seed, "lat2", number)
    normal = math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2)
    return min(config.latency_cap_s, config.latency_ms / 1000 * math.exp(config.latency_sigma * normal))


def host_address(index: int) -> str:
    return f"127.1.{index // 250}.{index % 250 + 1}"


DEAD_ADDRESS = "127.0.250.250"  # nobody listens there


def url_of(config: WanConfig, number: int, port: int) -> str:
    scheme = "https" if config.tls else "http"
    fate = fate_of(config, number)
    host = DEAD_ADDRESS if fate == "dead_host" else host_address(int(_unit(config.seed, "host", number) * config.hosts))
    return f"{scheme}://{host}:{port}/img/{number}.jpg"


def url_list(config: WanConfig, count: int, port: int, path: Path) -> list[tuple[str, str]]:
    """Write ``count`` urls with their fates to ``path`` (parquet: url, caption, fate)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [(url_of(config, n, port), fate_of(config, n)) for n in range(count)]
    pq.write_table(pa.table({"url": [u for u, _ in rows], "caption": [f"photo {n}" for n in range(count)],
                             "fate": [f for _, f in rows]}), path)
    return rows


class WanWeb:
    """The server: ``photos`` (bytes) served by url number, fates and latencies as configured."""

    def __init__(self, config: WanConfig, photos: list[bytes], tls: ssl.SSLContext | None = None) -> None:
        self.config, self.photos, self.tls = config, photos, tls
        self.requests = 0
        self.servers: list[asyncio.base_events.Server] = []

    async def start(self, port: int = 0) -> int:
        """Listen on every host's address; returns the port (one free on all of them)."""
        for attempt in range(50):
            chosen = port or random.randint(20_000, 60_000)
            try:
                for index in range(self.config.hosts):
                    self.servers.append(await asyncio.start_server(
                        self._connection, host_address(index), chosen, ssl=self.tls, backlog=512,
                        ssl_handshake_timeout=10 if self.tls else None))
                return chosen
            except OSError:
                for server in self.servers:
                    server.close()
                self.servers.clear()
                if port:
                    raise
        raise OSError("no port free on every host address")

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._answer(reader, writer):
                pass
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError,
                asyncio.CancelledError):  # clients hanging up, and the server stopping
            pass
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request; False when the connection is to close."""
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests += 1
        path = head.split(b" ", 2)[1].decode("latin-1") if head.count(b" ") >= 2 else "/"
        if path == "/robots.txt":  # no rules; the robots request pays a latency like any other
            await asyncio.sleep(latency_of(self.config, -1))
            return await self._send(writer, 404, b"", "text/plain")
        try:
            number = int(path.rsplit("/", 1)[-1].split(".", 1)[0])
        except ValueError:
            return await self._send(writer, 404, b"", "text/plain")
        fate = fate_of(self.config, number)
        await asyncio.sleep(latency_of(self.config, number))
        if fate == "hang":
            await asyncio.sleep(3600)
            return False
        if fate == "not_found":
            return await self._send(writer, 404, b"not found", "text/plain")
        if fate == "server_error":
            return await self._send(writer, 500, b"error", "text/plain")
        if fate == "too_many_requests":
            return await self._send(writer, 429, b"slow down", "text/plain", {"Retry-After": "1"})
        body = self.photos[number % len(self.photos)]
        if self.config.unique and body.startswith(b"\xff\xd8"):  # a COM segment after SOI: distinct bytes
            tag = str(number).encode()
            body = body[:2] + b"\xff\xfe" + (len(tag) + 2).to_bytes(2, "big") + tag + body[2:]
        if fate == "reset":
            writer.write(self._head(200, len(body), "image/jpeg"))
            await writer.drain()
            writer.transport.abort()
            return False
        if fate == "slow_body":
            writer.write(self._head(200, len(body), "image/jpeg"))
            step = max(1, int(len(body) / self.config.slow_body_seconds / 4))
            for start in range(0, len(body), step):
                writer.write(body[start:start + step])
                await writer.drain()
                await asyncio.sleep(0.25)
            return True
        return await self._send(writer, 200, body, "image/jpeg")

    @staticmethod
    def _head(status: int, length: int, content_type: str, headers: dict | None = None) -> bytes:
        reason = {200: "OK", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}[status]
        lines = [f"HTTP/1.1 {status} {reason}", f"Content-Type: {content_type}", f"Content-Length: {length}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def _send(self, writer, status: int, body: bytes, content_type: str, headers: dict | None = None) -> bool:
        writer.write(self._head(status, len(body), content_type, headers) + body)
        await writer.drain()
        return True

    def close(self) -> None:
        for server in self.servers:
            server.close()


def server_tls(folder: Path, config: WanConfig):
    """(server context, CA file) for every host's address."""
    from wit.testing.tls import TestCA

    ca = TestCA(folder)
    return ca.server_context([host_address(i) for i in range(config.hosts)]), ca.ca_file


def start_process(root, out, urls: int, hosts: int, extra: list[str] = ()):
    """Run the WAN web in its own process (off the crawler's cores' GIL): (process, the JSON line
    it prints: port, CA file, url list). Stop it with ``terminate()``."""
    import subprocess

    process = subprocess.Popen([sys.executable, "-m", "wit.testing.wanweb", "--root", str(root), "--out", str(out),
                                "--urls", str(urls), "--hosts", str(hosts), *extra], stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    if not line:
        process.wait()
        raise SystemExit("the WAN web did not start")
    return process, json.loads(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--root", required=True, help="a folder of JPEG photos to serve")
    parser.add_argument("--out", required=True, help="where urls.parquet and ca.pem go")
    parser.add_argument("--urls", type=int, default=6000)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plain", action="store_true", help="http instead of https")
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--latency-sigma", type=float, default=1.16)
    parser.add_argument("--fates", default=None, help="a JSON mix, e.g. '{\"ok\": 0.9, \"hang\": 0.1}'")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--unique", action="store_true", help="every url's bytes distinct (few photos, many urls)")
    args = parser.parse_args(argv)
    config = WanConfig(hosts=args.hosts, seed=args.seed, tls=not args.plain, latency_ms=args.latency_ms,
                       latency_sigma=args.latency_sigma, unique=args.unique, **({"mix": json.loads(args.fates)} if args.fates else {}))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = [p.read_bytes() for p in sorted(Path(args.root).glob("*.jpg"))]
    if not photos:
        raise SystemExit(f"no .jpg photos in {args.root}")
    context, ca_file = server_tls(out / "ca", config) if config.tls else (None, None)

    async def serve() -> None:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # a socket per host, and per client connection
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        web = WanWeb(config, photos, context)
        port = await web.start(args.port)
        url_list(config, args.urls, port, out / "urls.parquet")
        print(json.dumps({"port": port, "ca": str(ca_file) if ca_file else None, "urls": str(out / "urls.parquet")}),
              flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        web.close()

    asyncio.run(serve())


if __name__ == "__main__":
    sys.exit(main())
