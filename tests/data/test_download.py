"""Broden download against a local HTTP server: resume, checksums, corrupt and unsafe archives."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from netdissect.data import BrodenMeta
from netdissect.data.download import DownloadError, download_broden
from netdissect.data.synthetic import make_synthetic_dataset

NAME = "broden1_224"


class Server:
    """Serves ``files`` on 127.0.0.1 with HTTP Range support; ``cut`` truncates the next response."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: int | None = None
        self.requests: list[tuple[str, str | None]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                data = owner.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.cut is not None:
                    body, owner.cut = body[: owner.cut], None
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> bytes:
    root = tmp_path_factory.mktemp("src")
    data = make_synthetic_dataset(root / NAME, n=6, size=32, seed=0)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for path in sorted(data.rglob("*")):
            z.write(path, path.relative_to(root).as_posix())
    return buffer.getvalue()


def mirror(server: Server, data: bytes) -> str:
    server.files["/broden.zip"] = data
    return server.url + "/broden.zip"


def test_clean_download_then_found_complete(server, archive, tmp_path):
    url = mirror(server, archive)
    path = download_broden(NAME, tmp_path, urls=[url], sha256=hashlib.sha256(archive).hexdigest(), progress=False)
    assert path == tmp_path / NAME
    assert len(BrodenMeta.load(path).rows) == 6
    assert not (tmp_path / f"{NAME}.zip").exists()
    count = len(server.requests)
    assert download_broden(NAME, tmp_path, urls=[url], progress=False) == path
    assert len(server.requests) == count  # a complete copy: nothing fetched


def test_interrupted_transfer_resumes(server, archive, tmp_path):
    url = mirror(server, archive)
    server.cut = len(archive) // 2
    with pytest.raises(DownloadError, match="cannot download"):
        download_broden(NAME, tmp_path, urls=[url], progress=False, timeout=5)
    partial = tmp_path / f"{NAME}.zip.part"
    assert partial.stat().st_size == len(archive) // 2
    assert not (tmp_path / NAME).exists()  # no half dataset
    path = download_broden(NAME, tmp_path, urls=[url], progress=False, timeout=5)
    assert server.requests[-1][1] == f"bytes={len(archive) // 2}-"  # resumed, not restarted
    assert len(BrodenMeta.load(path).rows) == 6


def test_wrong_checksum_refused(server, archive, tmp_path):
    with pytest.raises(DownloadError, match="SHA-256 .* expected 0+; the file was deleted"):
        download_broden(NAME, tmp_path, urls=[mirror(server, archive)], sha256="0" * 64, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_corrupt_zip_refused(server, archive, tmp_path):
    broken = bytearray(archive)
    broken[len(broken) // 3 : len(broken) // 3 + 64] = b"\0" * 64
    with pytest.raises(DownloadError, match="corrupt|not a valid zip"):
        download_broden(NAME, tmp_path, urls=[mirror(server, bytes(broken))], progress=False)
    assert not (tmp_path / NAME).exists()


@pytest.mark.parametrize("evil", ["../escape.txt", "/tmp/netdissect-abs-escape.txt", f"{NAME}/../../up.txt"])
def test_unsafe_archive_refused(server, tmp_path, evil):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr(f"{NAME}/index.csv", "x")
        z.writestr(evil, "pwned")
    target = tmp_path / "data"
    with pytest.raises(DownloadError, match="unsafe path"):
        download_broden(NAME, target, urls=[mirror(server, buffer.getvalue())], progress=False)
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "up.txt").exists()
    assert not Path("/tmp/netdissect-abs-escape.txt").exists()
    assert not (target / NAME).exists()


def test_symlink_refused(server, tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        link = zipfile.ZipInfo(f"{NAME}/images")
        link.external_attr = 0o120777 << 16
        z.writestr(link, "/etc")
    with pytest.raises(DownloadError, match="holds a link"):
        download_broden(NAME, tmp_path, urls=[mirror(server, buffer.getvalue())], progress=False)


def test_offline_is_one_line_with_manual_steps(tmp_path, monkeypatch):
    monkeypatch.setattr("netdissect.data.download.OFFICIAL_URL", "http://127.0.0.1:9/{name}.zip")
    with pytest.raises(DownloadError) as info:
        download_broden(NAME, tmp_path, urls=["http://127.0.0.1:9/mirror.zip"], progress=False, timeout=5)
    message = info.value.message
    assert "\n" not in message
    assert "127.0.0.1:9/mirror.zip" in message and f"put it at {tmp_path / (NAME + '.zip')}" in message


def test_unknown_name(tmp_path):
    with pytest.raises(DownloadError, match="unknown dataset 'broden2'"):
        download_broden("broden2", tmp_path)


def test_cli_download_then_dissect_by_name(server, archive, tmp_path, capsys, monkeypatch):
    from netdissect.cli import main

    url = mirror(server, archive)
    data_dir = tmp_path / "data"
    assert main(["download", NAME, "--dir", str(data_dir), "--url", url, "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == f"{NAME}: {data_dir / NAME}"
    monkeypatch.setenv("NETDISSECT_DATA", str(data_dir))
    args = [
        "dissect",
        "--model",
        "demo",
        "--layers",
        "conv1",
        "--dataset",
        NAME,
        "--out",
        str(tmp_path / "run"),
        "--workers",
        "0",
        "--no-progress",
        "--no-report",
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    assert (tmp_path / "run" / "conv1" / "tally.csv").is_file()
    monkeypatch.setenv("NETDISSECT_DATA", str(tmp_path / "empty"))
    capsys.readouterr()
    assert main(args[:-1] + ["cpu", "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"netdissect: error: {NAME} is not in ") and "netdissect download" in err
    assert len(err.strip().splitlines()) == 1
