"""Every fault mode of the loopback web, observed by a plain HTTP client."""

from __future__ import annotations

import http.client
import io
import socket
import time

import pytest
import requests
from PIL import Image

from wit.testing.fakeweb import FAULTS, HTML_PAGE, HUGE_LENGTH, BOMB_SIDE

BODY = bytes(range(256)) * 64  # 16 KiB


def get(web, path, **kwargs):
    return requests.get(web.url(path), timeout=kwargs.pop("timeout", 5), **kwargs)


def test_serves_registered_bytes_and_files(fake_web, tmp_path):
    fake_web.add("/blob.bin", BODY)
    (tmp_path / "www" / "page.html").write_text("<img src='a.jpg' alt='x'>")
    response = get(fake_web, "/blob.bin")
    assert response.status_code == 200 and response.content == BODY
    page = get(fake_web, "/page.html")
    assert page.headers["Content-Type"] == "text/html" and "alt='x'" in page.text
    assert get(fake_web, "/missing").status_code == 404
    assert get(fake_web, "/../../etc/passwd").status_code == 404


def test_generated_body_callable(fake_web):
    calls = []
    fake_web.add("/gen.jpg", lambda: calls.append(1) or b"generated")
    assert get(fake_web, "/gen.jpg").content == b"generated"
    assert get(fake_web, "/gen.jpg").headers["Content-Type"] == "image/jpeg"
    assert len(calls) == 2


def test_status_faults(fake_web):
    fake_web.add("/nf", BODY, fault="not_found")
    fake_web.add("/err", BODY, fault="server_error")
    assert get(fake_web, "/nf").status_code == 404
    assert get(fake_web, "/err").status_code == 500


def test_429_with_retry_after_then_success(fake_web):
    fake_web.add("/busy", BODY, fault="too_many_requests", retry_after=3, fail_times=2)
    first, second, third = (get(fake_web, "/busy") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (429, 429, 200)
    assert first.headers["Retry-After"] == "3"
    assert third.content == BODY


def test_server_error_recovers_after_fail_times(fake_web):
    fake_web.add("/flaky", BODY, fault="server_error", fail_times=1)
    assert [get(fake_web, "/flaky").status_code for _ in range(2)] == [500, 200]


def test_redirect_chain_and_loop(fake_web):
    fake_web.add("/final.bin", BODY)
    start = fake_web.redirect_chain("/r", "/final.bin", hops=3)
    response = requests.get(start, timeout=5)
    assert response.content == BODY and len(response.history) == 3
    loop = fake_web.redirect_loop("/a", "/b")
    with pytest.raises(requests.TooManyRedirects):
        requests.get(loop, timeout=5)
    assert len(fake_web.requests_for("/a")) > 5  # the client really went round


def test_redirect_to_absolute_url_is_not_followed_by_server(fake_web):
    fake_web.add("/meta", fault="redirect", redirect_to="http://169.254.169.254/computeMetadata/v1/")
    response = get(fake_web, "/meta", allow_redirects=False)
    assert response.status_code == 302
    assert response.headers["Location"] == "http://169.254.169.254/computeMetadata/v1/"


def test_slow_drip_outlasts_per_read_timeout(fake_web):
    # 2 KiB at 64 bytes per 0.05 s: each read returns within the 0.5 s read timeout, yet the
    # whole body takes over 1.5 s, so only a total deadline can stop it.
    fake_web.add("/drip", BODY[:2048], fault="slow_drip", drip_bytes=64, drip_interval=0.05)
    started = time.monotonic()
    response = get(fake_web, "/drip", timeout=(2, 0.5))
    elapsed = time.monotonic() - started
    assert response.content == BODY[:2048]
    assert elapsed > 1.5


def test_hang_never_answers(fake_web):
    fake_web.add("/hang", BODY, fault="hang")
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        get(fake_web, "/hang", timeout=(2, 0.5))
    assert time.monotonic() - started < 3


def test_reset_mid_body(fake_web):
    fake_web.add("/reset", BODY, fault="reset")
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        get(fake_web, "/reset")


def test_truncated_body(fake_web):
    fake_web.add("/trunc", BODY, fault="truncated")
    connection = http.client.HTTPConnection("127.0.0.1", fake_web.port, timeout=5)
    connection.request("GET", "/trunc")
    response = connection.getresponse()
    assert int(response.headers["Content-Length"]) == len(BODY)
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert len(caught.value.partial) == len(BODY) // 2


def test_wrong_content_type_and_html(fake_web):
    fake_web.add("/img.jpg", BODY, fault="wrong_content_type")
    fake_web.add("/photo.jpg", BODY, fault="html")
    wrong = get(fake_web, "/img.jpg")
    assert wrong.headers["Content-Type"] == "text/plain" and wrong.content == BODY
    html = get(fake_web, "/photo.jpg")
    assert html.headers["Content-Type"].startswith("text/html") and html.content == HTML_PAGE


def test_huge_content_length(fake_web):
    fake_web.add("/huge.jpg", BODY, fault="huge_content_length")
    connection = http.client.HTTPConnection("127.0.0.1", fake_web.port, timeout=5)
    connection.request("GET", "/huge.jpg")
    response = connection.getresponse()
    assert int(response.headers["Content-Length"]) == HUGE_LENGTH
    assert response.read(1024) == BODY[:1024]


def test_x_robots_tag(fake_web):
    fake_web.add("/tagged.jpg", BODY, fault="x_robots_tag")
    fake_web.add("/scoped.jpg", BODY, fault="x_robots_tag", robots_tag="witbot: noimageai")
    assert get(fake_web, "/tagged.jpg").headers["X-Robots-Tag"] == "noai"
    assert get(fake_web, "/scoped.jpg").headers["X-Robots-Tag"] == "witbot: noimageai"


def test_decompression_bomb_png(fake_web):
    fake_web.add("/bomb.png", fault="decompression_bomb")
    response = get(fake_web, "/bomb.png")
    assert response.headers["Content-Type"] == "image/png"
    assert len(response.content) < 200_000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(response.content))
    Image.MAX_IMAGE_PIXELS, saved = None, Image.MAX_IMAGE_PIXELS
    try:
        assert Image.open(io.BytesIO(response.content)).size == (BOMB_SIDE, BOMB_SIDE)
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def test_robots_txt(fake_web):
    assert get(fake_web, "/robots.txt").status_code == 404
    fake_web.set_robots("User-agent: *\nDisallow: /private/\n")
    assert "Disallow: /private/" in get(fake_web, "/robots.txt").text


def test_request_log_records_headers_time_and_connections(fake_web):
    fake_web.add("/x", BODY)
    before = time.time()
    with requests.Session() as session:
        for _ in range(3):
            session.get(fake_web.url("/x"), headers={"User-Agent": "witbot/0.1 (+contact)"}, timeout=5)
    records = fake_web.requests_for("/x")
    assert len(records) == 3
    assert all(r.headers["User-Agent"] == "witbot/0.1 (+contact)" and r.time >= before for r in records)
    assert len({r.connection for r in records}) == 1  # keep-alive reuses one connection
    assert fake_web.max_active_connections >= 1


def test_max_active_connections_counts_parallel_clients(fake_web):
    fake_web.add("/slow", BODY[:256], fault="slow_drip", drip_bytes=128, drip_interval=0.2)
    sockets = []
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", fake_web.port), timeout=5)
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        sockets.append(sock)
    time.sleep(0.3)
    assert fake_web.max_active_connections >= 3
    for sock in sockets:
        sock.close()


def test_raw_script_sends_its_bytes_at_its_pace(fake_web):
    fake_web.add("/raw", fault="raw", script=[(b"HTTP/1.0 200 OK\r\nX-Odd: \xb2\r\n\r\n", 0.0), (b"ab", 0.2),
                                              (b"cd", 0.2)])
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", fake_web.port, timeout=5)
    connection.request("GET", "/raw")
    response = connection.getresponse()
    assert response.version == 10 and response.getheader("X-Odd") == "\u00b2"  # latin-1, as sent
    assert response.read() == b"abcd" and time.monotonic() - started >= 0.4


def test_tls_with_a_test_ca(tmp_path):
    import ssl

    from wit.testing.fakeweb import FakeWeb
    from wit.testing.tls import TestCA

    ca = TestCA(tmp_path)
    with FakeWeb(host="127.0.0.7", tls=ca.server_context(["127.0.0.7", "img.example"])) as web:
        web.add("/a.bin", BODY)
        assert web.base_url.startswith("https://127.0.0.7:")
        assert requests.get(web.url("/a.bin"), timeout=5, verify=str(ca.ca_file)).content == BODY
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(web.url("/a.bin"), timeout=5)  # certifi does not know the test CA
        context = ssl.create_default_context(cafile=str(ca.ca_file))
        with socket.create_connection(("127.0.0.7", web.port), timeout=5) as raw:
            with pytest.raises(ssl.SSLCertVerificationError, match="mismatch|match"):
                context.wrap_socket(raw, server_hostname="other.example")


def test_every_fault_is_covered_here():
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    missing = [fault for fault in FAULTS if f'"{fault}"' not in source]
    assert not missing, f"faults without a test: {missing}"


def test_unknown_fault_is_an_error(fake_web):
    with pytest.raises(ValueError, match="unknown fault"):
        fake_web.add("/x", fault="teapot")
