"""URL manifests fetched from a real HTTP server on 127.0.0.1: checksums, resume, failures."""

from __future__ import annotations

import hashlib
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from deepfake_lth.core.errors import UserError
from deepfake_lth.data.acquire import acquire as acquire_dataset
from deepfake_lth.data.acquire import read_sources, urls

BODIES = {
    "/files/a.mp4": bytes(range(256)) * 40,  # 10 240 bytes
    "/drop/b.mp4": b"0123456789abcdef" * 800,  # 12 800 bytes
    "/norange/c.jpg": b"\xff\xd8" + b"img" * 3000,
    "/files/bad.mp4": b"not what the manifest says" * 10,
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """A threaded HTTP server with the handlers the tests need; records every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.dropped: set[str] = set()
        state = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep the test output quiet
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                state.requests.append((self.path, rng))
                body = BODIES.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                if self.path.startswith("/drop/") and self.path not in state.dropped:
                    # full length announced, half the bytes sent, connection dropped
                    state.dropped.add(self.path)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                start = 0
                m = re.fullmatch(r"bytes=(\d+)-", rng or "")
                if m and not self.path.startswith("/norange/"):
                    start = int(m.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def write_manifest(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def source(manifest: Path, **kw) -> dict:
    return {"type": "urls", "manifest": str(manifest), "retries": 3, "backoff": 0.001,
            "timeout": 5, **kw}


def test_download_checksums_resume_and_failures(server, tmp_path):
    b = server.base
    manifest = write_manifest(tmp_path / "m.csv", [
        {"url": f"{b}/files/a.mp4", "sha256": sha(BODIES["/files/a.mp4"]), "label": 0,
         "video_id": "a", "split": "train"},
        {"url": f"{b}/drop/b.mp4", "sha256": sha(BODIES["/drop/b.mp4"]), "label": "fake",
         "video_id": "b", "split": ""},
        {"url": f"{b}/files/bad.mp4", "sha256": sha(b"something else"), "label": 1,
         "video_id": "bad", "split": ""},
        {"url": f"{b}/missing.mp4", "sha256": "", "label": 1, "video_id": "gone", "split": ""},
    ])
    out = tmp_path / "ds"
    sources = read_sources(acquire_dataset("ds", source(manifest), out))

    assert list(sources["video_id"]) == ["a", "b"]
    assert list(sources["label"]) == [0, 1] and list(sources["split"]) == ["train", ""]
    assert (sources["kind"] == "video").all()
    for rel, key in zip(sources["path"], ["/files/a.mp4", "/drop/b.mp4"]):
        assert (out / rel).read_bytes() == BODIES[key]
    # the dropped transfer was resumed: the second request asked for the missing half only
    b_reqs = [r for p, r in server.requests if p == "/drop/b.mp4"]
    assert b_reqs == [None, f"bytes={len(BODIES['/drop/b.mp4']) // 2}-"]
    # checksum mismatch: file deleted, no part left; 404: one request, no retry
    assert not (out / "files" / "bad.mp4").exists()
    assert not list((out / "files").glob("*.part"))
    assert [p for p, _ in server.requests].count("/missing.mp4") == 1

    report = pd.read_csv(out / "download_log.csv", keep_default_na=False)
    status = dict(zip(report["url"], report["status"]))
    assert status == {f"{b}/files/a.mp4": "ok", f"{b}/drop/b.mp4": "ok",
                      f"{b}/files/bad.mp4": "failed", f"{b}/missing.mp4": "failed"}
    message = dict(zip(report["url"], report["message"]))
    assert "sha256 mismatch" in message[f"{b}/files/bad.mp4"]
    assert "404" in message[f"{b}/missing.mp4"]

    # a second run fetches nothing that is already there with the right checksum
    before = len(server.requests)
    acquire_dataset("ds", source(manifest), out)
    again = [p for p, _ in server.requests[before:]]
    assert "/files/a.mp4" not in again and "/drop/b.mp4" not in again
    report = pd.read_csv(out / "download_log.csv", keep_default_na=False)
    assert dict(zip(report["url"], report["status"]))[f"{b}/files/a.mp4"] == "present"


def test_mismatch_logged_with_url(server, tmp_path, caplog):
    manifest = write_manifest(tmp_path / "m.csv", [
        {"url": f"{server.base}/files/bad.mp4", "sha256": "0" * 64, "label": 1,
         "video_id": "bad"},
        {"url": f"{server.base}/files/a.mp4", "sha256": sha(BODIES["/files/a.mp4"]),
         "label": 0, "video_id": "a"},
    ])
    with caplog.at_level("ERROR"):
        table = urls.acquire("ds", source(manifest), tmp_path / "ds", 0)
    assert list(table["video_id"]) == ["a"]
    assert any(f"{server.base}/files/bad.mp4" in r.getMessage() and "sha256" in r.getMessage()
               for r in caplog.records)


def test_server_ignoring_range_restarts(server, tmp_path):
    body = BODIES["/norange/c.jpg"]
    dest = tmp_path / "c.jpg"
    dest.with_name("c.jpg.part").write_bytes(b"stale partial bytes")
    status = urls.download(f"{server.base}/norange/c.jpg", dest, sha(body), retries=1,
                           backoff=0.001, timeout=5)
    assert status == "ok" and dest.read_bytes() == body
    assert server.requests == [("/norange/c.jpg", "bytes=19-")]
    assert not dest.with_name("c.jpg.part").exists()


def test_resume_from_existing_part(server, tmp_path):
    body = BODIES["/files/a.mp4"]
    dest = tmp_path / "a.mp4"
    dest.with_name("a.mp4.part").write_bytes(body[:1000])
    urls.download(f"{server.base}/files/a.mp4", dest, sha(body), retries=0, timeout=5)
    assert dest.read_bytes() == body
    assert server.requests == [("/files/a.mp4", "bytes=1000-")]


def test_complete_part_answered_416(server, tmp_path):
    body = BODIES["/files/a.mp4"]
    dest = tmp_path / "a.mp4"
    dest.with_name("a.mp4.part").write_bytes(body)
    assert urls.download(f"{server.base}/files/a.mp4", dest, sha(body), retries=0) == "ok"
    assert dest.read_bytes() == body
    assert server.requests == [("/files/a.mp4", f"bytes={len(body)}-")]


def test_retries_spent_keep_part_and_back_off(tmp_path):
    # nothing listens on this port: every attempt fails; delays double
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    delays: list[float] = []
    with pytest.raises(urls.DownloadError, match="4 attempt"):
        urls.download(f"http://127.0.0.1:{port}/x.mp4", tmp_path / "x.mp4", retries=3,
                      backoff=0.5, timeout=2, sleep=delays.append)
    assert delays == [0.5, 1.0, 2.0]


def test_all_failed_raises(server, tmp_path):
    manifest = write_manifest(tmp_path / "m.csv", [
        {"url": f"{server.base}/nope1.mp4", "sha256": "", "label": 0, "video_id": "x"},
        {"url": f"{server.base}/files/bad.mp4", "sha256": "1" * 64, "label": 1,
         "video_id": "y"},
    ])
    with pytest.raises(UserError, match="download_log.csv"):
        urls.acquire("ds", source(manifest), tmp_path / "ds", 0)
    report = pd.read_csv(tmp_path / "ds" / "download_log.csv")
    assert list(report["status"]) == ["failed", "failed"]


def test_manifest_validation_and_names(tmp_path):
    bad = write_manifest(tmp_path / "bad.csv", [{"url": "http://h/a.mp4", "label": 0}])
    with pytest.raises(UserError, match="missing column.*sha256.*video_id"):
        urls.read_manifest(bad)
    lab = write_manifest(tmp_path / "lab.csv", [
        {"url": "http://h/a.mp4", "sha256": "", "label": "maybe", "video_id": "a"}])
    with pytest.raises(UserError, match=r"lab.csv:2: label"):
        urls.read_manifest(lab)
    ftp = write_manifest(tmp_path / "ftp.csv", [
        {"url": "ftp://h/a.mp4", "sha256": "", "label": 0, "video_id": "a"}])
    with pytest.raises(UserError, match="not an http"):
        urls.read_manifest(ftp)
    ok = write_manifest(tmp_path / "ok.csv", [
        {"url": "http://h/x/clip%20one.mp4?sig=1", "sha256": "", "label": 0, "video_id": "v1"},
        {"url": "http://h/y/clip%20one.mp4", "sha256": "", "label": 1, "video_id": "v/2"},
        {"url": "http://h/img.PNG", "sha256": "", "label": 1, "video_id": "i"},
    ])
    entries = urls.read_manifest(ok)
    assert [e.name for e in entries] == ["clip_one.mp4", "v_2.mp4", "img.PNG"]
    assert [e.kind for e in entries] == ["video", "video", "image"]
