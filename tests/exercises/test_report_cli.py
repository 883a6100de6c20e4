"""``crisis exercise report ID``: the evaluation fetched from the API into a file or stdout,
against a stub server that records what was asked; refusals and a missing token."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crisis.cli import main

asked: list[tuple[str, str | None]] = []


class Stub(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        asked.append((self.path, self.headers.get("Authorization")))
        if "/ingen/" in self.path:
            body = json.dumps({"errors": [{"field": "id", "message": "ingen øvelse"}]}).encode()
            self.send_response(404)
        else:
            body = b"%PDF-1.7 stub"
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    asked.clear()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_report_writes_the_evaluation(
    server: str, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    out = tmp_path / "e.pdf"
    code = main(["exercise", "report", "ovelse-x", "--url", server, "--token", "t", "-o", str(out)])
    assert code == 0 and out.read_bytes() == b"%PDF-1.7 stub"
    assert asked == [("/api/v1/exercises/ovelse-x/evaluation?format=pdf&lang=nb", "Bearer t")]
    base = ["exercise", "report", "ovelse-x", "--url", server, "--token", "t"]
    code = main([*base, "--format", "json", "--lang", "en", "-o", "-"])
    assert code == 0 and capsysbinary.readouterr().out == b"%PDF-1.7 stub"
    assert asked[-1][0].endswith("?format=json&lang=en")


def test_report_refused_and_without_token(
    server: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CRISIS_TOKEN", raising=False)
    assert main(["exercise", "report", "ingen", "--url", server, "--token", "t", "-o", "-"]) == 1
    assert "HTTP 404" in capsys.readouterr().err
    assert main(["exercise", "report", "ovelse-x", "--url", server]) == 2
