"""ossctl.serve.engine_api's HTTP/1.1 against a real unix-socket server that answers the
ways an engine (or a proxy in front of one) may: Content-Length, chunked, to the end of
the connection, an error with a JSON message, and a kept connection closed between two
requests."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from ossctl.serve import engine_api


class Server:
    """Answers each request on a connection with the next of ``answers`` (raw bytes);
    ``b""`` closes the connection instead of answering."""

    def __init__(self, path: Path, answers: list[bytes]):
        self.answers, self.requests, self.connections = list(answers), [], 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(4)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                buf = b""
                while self.answers:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    head, buf = buf.split(b"\r\n\r\n", 1)
                    self.requests.append(head.decode())
                    answer = self.answers.pop(0)
                    if not answer:
                        break
                    conn.sendall(answer)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(*answers: bytes) -> tuple[Server, engine_api.EngineAPI]:
        s = Server(tmp_path / f"s{len(servers)}.sock", list(answers))
        servers.append(s)
        return s, engine_api.open_api(f"unix://{tmp_path}/s{len(servers) - 1}.sock", {}, timeout=5)

    yield start
    for s in servers:
        s.close()


def test_content_length_chunked_and_to_the_end_on_one_kept_connection(serve):
    s, api = serve(b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{"Id": "abc"}',
                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\n[1, \r\n3\r\n2, \r\n2\r\n3]\r\n0\r\n\r\n",
                   b"HTTP/1.0 200 OK\r\n\r\n[true]")
    assert api.get_json("/containers/abc/json") == {"Id": "abc"}
    assert api.get_json("/containers/json", {"all": 1, "filters": '{"label": ["a=b"]}'}) == [1, 2, 3]
    assert api.get_json("/info") == [True]
    assert s.connections == 1  # the last answer ran to the end of the connection
    assert s.requests[0].startswith("GET /containers/abc/json HTTP/1.1\r\nHost: localhost\r\n")
    assert s.requests[1].startswith("GET /containers/json?all=1&filters=%7B%22label%22%3A+%5B%22a%3Db%22%5D%7D HTTP/1.1")
    api.close()


def test_an_engine_error_carries_its_status_and_message(serve):
    _, api = serve(b'HTTP/1.1 404 Not Found\r\nContent-Length: 39\r\n\r\n{"message":"No such container: nope"}\r\n',
                   b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
    with pytest.raises(engine_api.APIError) as e:
        api.get("/containers/nope/json")
    assert (e.value.status_code, e.value.explanation) == (404, "No such container: nope")
    with pytest.raises(engine_api.APIError) as e:
        api.get("/version")
    assert (e.value.status_code, e.value.explanation) == (400, "Client sent an HTTP request to an HTTPS server.")


def test_a_kept_connection_closed_by_the_engine_is_opened_again_once(serve):
    s, api = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", b"",
                   b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n[42]")
    assert api.get_json("/version") == {}
    assert api.get_json("/version") == [42]  # the first try met a closed connection
    assert s.connections == 2


def test_a_fresh_connection_that_closes_is_an_error_not_a_loop(serve):
    _, api = serve(b"")
    with pytest.raises(ConnectionError, match="closed the connection"):
        api.get("/version")


def test_no_socket_is_an_oserror(tmp_path):
    api = engine_api.open_api(f"unix://{tmp_path}/none.sock", {}, timeout=5)
    with pytest.raises(FileNotFoundError):
        api.get("/version")


def test_endpoints_it_does_not_speak_are_left_to_the_sdk(tmp_path):
    assert engine_api.open_api("npipe:////./pipe/docker_engine", {}, 5) is None
    assert engine_api.open_api("tcp://127.0.0.1", {}, 5) is None  # no port: the SDK says what is wrong
    assert engine_api.open_api("ssh://u@h", {}, 5) is None  # no ssh command given


def test_tls_settings_follow_the_docker_cli(tmp_path):
    assert engine_api.tls_settings({}) is None
    assert engine_api.tls_settings({"DOCKER_TLS_VERIFY": ""}) is None
    with pytest.raises(engine_api.TLSFilesError, match="cert.pem"):
        engine_api.tls_settings({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)})
    for f in ("cert.pem", "key.pem"):
        (tmp_path / f).write_text("x")
    # a cert path alone: TLS without verifying the engine
    assert engine_api.tls_settings({"DOCKER_CERT_PATH": str(tmp_path)}) == (
        str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"), None)
    with pytest.raises(engine_api.TLSFilesError, match="ca.pem"):
        engine_api.tls_settings({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)})
    (tmp_path / "ca.pem").write_text("x")
    assert engine_api.tls_settings({"DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path)})[2] == \
        str(tmp_path / "ca.pem")


def test_a_path_piece_keeps_an_image_name_whole():
    assert engine_api.seg("ossctl/ledger:1") == "ossctl/ledger:1"
    assert engine_api.seg("a b?c#d") == "a%20b%3Fc%23d"
