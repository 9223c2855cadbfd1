"""What a client sends cannot hurt the HTTP service: heads and bodies are bounded before
anything is authenticated or parsed, every error has the API's shape, TLS works. Through
real servers on loopback."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time

import httpx
import pytest

pytest.importorskip("uvicorn")

from test_http import AUTH, Server, actions  # noqa: E402
from test_http_access import Process, wait_for  # noqa: E402


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "d", policy="uniform", seed=0)
    yield s
    s.stop()


def shape(r: httpx.Response) -> dict:
    body = r.json()
    assert list(body) == ["error"] and set(body["error"]) == {"field", "reason"}, r.text
    return body["error"]


def test_every_error_has_the_shape(server):
    c, bare = server.client, httpx.Client(base_url=server.url, timeout=10)
    cases = [
        (bare.get("/nowhere"), 401, "authorization"),  # strangers learn nothing of routes
        (c.get("/nowhere"), 404, "path"),
        (c.put("/v1/rank"), 405, "method"),
        (c.post("/v1/rank", content=b'{"user_id": ', headers={"content-type": "application/json"}),
         400, "body"),
        (c.post("/v1/events", content=b"\xff\xfe", headers={"content-type": "application/json"}),
         400, "body"),
        (c.post("/v1/rank", json=[1, 2]), 422, "body"),
        (c.post("/v1/rank", content=b"user_id=u", headers={"content-type": "text/plain"}), 422,
         "body"),
        (c.post("/v1/events", content=b"x" * 30_000, headers={"content-type": "application/json"}),
         413, "body"),
        (c.get("/healthz", headers={f"x-h{i}": "1" for i in range(101)}), 431, "headers"),
        (c.get("/healthz", headers={"x-big": "a" * 20_000}), 431, "headers"),
        (c.post("/v1/events/x/reward", json={"value": 1e300}), 422, "value"),
    ]
    for r, status, field in cases:
        assert r.status_code == status, (status, r.text)
        assert shape(r)["field"] == field, r.text
    assert cases[2][0].headers["allow"] == "POST"
    assert c.post("/v1/rank", json={"user_id": "u", "actions": actions()}).status_code == 200
    bare.close()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def send_endless_header(port: int, megabytes: int) -> tuple[float, int, bytes]:
    """Stream a header of up to ``megabytes`` MB; (seconds until the server answered or
    hung up, bytes it took, its answer)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    start, sent = time.perf_counter(), 0
    chunk = b"a" * (1 << 16)
    try:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        for _ in range(megabytes * 16):
            sock.sendall(chunk)
            sent += len(chunk)
    except OSError:  # reset or broken pipe: the server hung up
        pass
    try:
        answer = sock.recv(4096)
    except OSError:
        answer = b""
    took = time.perf_counter() - start
    sock.close()
    return took, sent, answer


def test_oversized_headers_are_refused_fast_with_bounded_memory(tmp_path):
    p = Process(tmp_path, env={"LOOPWISE_TOKEN": "t0ken"})
    try:
        before = rss_kib(p.proc.pid)
        health: list[float] = []
        done = threading.Event()

        def probe():
            with httpx.Client(base_url=p.url, timeout=10) as c:
                while not done.is_set():
                    t0 = time.perf_counter()
                    assert c.get("/healthz").status_code == 200
                    health.append(time.perf_counter() - t0)
                    time.sleep(0.02)

        prober = threading.Thread(target=probe)
        prober.start()
        results = [send_endless_header(p.port, megabytes=200) for _ in range(3)]
        wait_for(lambda: len(health) >= 5)
        done.set()
        prober.join()
        grown = rss_kib(p.proc.pid) - before
    finally:
        p.stop()
    print("endless headers (s, bytes taken):", [r[:2] for r in results],
          "healthz max s:", max(health))
    for took, sent, answer in results:
        assert took < 2 and sent < (8 << 20), (took, sent)
        assert answer == b"" or answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert grown < 30_000, f"RSS grew by {grown} KiB"
    assert health and max(health) < 0.5, max(health)


def self_signed(folder) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return str(certfile), str(keyfile)


def test_tls(tmp_path):
    pytest.importorskip("cryptography")
    certfile, keyfile = self_signed(tmp_path)
    context = ssl.create_default_context(cafile=certfile)
    p = Process(tmp_path, "--ssl-certfile", certfile, "--ssl-keyfile", keyfile,
                env={"LOOPWISE_TOKEN": "tls-token"}, scheme="https", verify=context)
    try:
        r = p.post("/v1/rank", "tls-token", json={"user_id": "u", "actions": actions()})
        assert r.status_code == 200 and r.url.scheme == "https"
        assert p.get("/metrics").status_code == 401
        with pytest.raises(httpx.TransportError):  # plain HTTP is not served
            httpx.get(f"http://127.0.0.1:{p.port}/healthz", timeout=5)
    finally:
        p.stop()
    assert "on https://127.0.0.1" in p.log.read_text()


def test_keep_alive_requests_with_bodies_pass_the_head_limit(server):
    """A head and a body arriving in one read do not count the body against the head."""
    body = {"events": [{"user_id": "u", "type": "view", "ts": time.time(),
                        "text": "x" * 5_800} for _ in range(3)]}  # 17.5 kB, over 16 kB
    with httpx.Client(base_url=server.url, headers=AUTH, timeout=10) as c:
        for _ in range(3):  # one connection: each request's head is counted afresh
            assert c.post("/v1/events", json=body).status_code == 200
