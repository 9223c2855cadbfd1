"""Property-based fuzzing of the HTTP API from its own OpenAPI spec: no input gives a 5xx,
and every answer that is not a success has the API's error shape. Each generated request
is sent with the all-scopes token, a token with the rank scope only, an unknown token and
none. A second test sends arbitrary request heads as raw bytes to a real server."""

from __future__ import annotations

import json
import socket

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from engine import Engine  # noqa: E402
from engine.serve import tokens  # noqa: E402
from engine.serve.app import create_app  # noqa: E402

TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RANK_ONLY: dict[str, str] = {}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    eng = Engine(folder / "d", policy="lints", item_features=2, context_features=["mobile"],
                 seed=0)
    token_file = str(folder / "tokens.yaml")
    RANK_ONLY["Authorization"] = f"Bearer {tokens.add(token_file, 'ranker', ['rank'])}"
    application = create_app(eng, tokens.Tokens(TOKEN, token_file), max_body_bytes=50_000,
                             max_candidates=50, access_log="off")
    yield application
    eng.close()


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.fixture(scope="module")
def api_schema(app):
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case):
    for headers in (AUTH, RANK_ONLY, {}, {"Authorization": "Bearer x"}):
        response = case.call(headers=headers)
        assert response.status_code < 500, (case.path, case.body, response.text)
        if response.status_code >= 400:
            error = response.json()["error"]
            assert set(error) == {"field", "reason"}, response.text


def _raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server hung up first: a refusal
            pass
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError:
            pass
    return b"".join(chunks)


_token = st.binary(min_size=1, max_size=12)
_line = st.one_of(st.binary(max_size=60), st.builds(lambda n: b"h" * n, st.integers(0, 20_000)))
_head = st.builds(
    lambda method, path, version, headers, body: (
        method + b" " + path + b" " + version + b"\r\n"
        + b"".join(name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n" + body),
    st.one_of(st.sampled_from([b"GET", b"POST", b"DELETE", b"PUT", b"OPTIONS"]), _token),
    st.one_of(st.sampled_from([b"/v1/rank", b"/healthz", b"/v1/profiles/%ff%00", b"*"]), _line),
    st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 x", b""]),
    st.lists(st.tuples(st.one_of(st.sampled_from([b"authorization", b"content-length",
                                                   b"transfer-encoding", b"host"]), _token),
                       _line), max_size=120),
    st.binary(max_size=200))


def test_raw_request_heads_never_get_a_5xx(tmp_path):
    """Arbitrary bytes as the request line and headers, on a real server: every answer is a
    4xx or 2xx, errors in the API's shape, and the server keeps serving."""
    from test_http import Server

    server = Server(tmp_path / "d", token=TOKEN, policy="uniform", seed=0)
    answers = []

    @given(request=_head)
    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def exchange(request):
        answer = _raw_exchange(server.port, request)
        answers.append(answer[:12])
        if not answer:
            return  # refused by closing (e.g. an upgrade that is not supported)
        status = int(answer[9:12])
        assert 200 <= status < 500, answer[:300]
        if status >= 400 and b"\r\n\r\n" in answer:
            head, body = answer.split(b"\r\n\r\n", 1)
            assert json.loads(body)["error"].keys() == {"field", "reason"}, answer[:300]

    try:
        exchange()
        assert server.client.get("/healthz").status_code == 200
    finally:
        server.stop()
    assert len(answers) >= 100
