"""Download Broden safely: mirrors, resume, checksums, safe extraction, atomic install.

The official host (``docs/design/broden-format.md``, "Downloads") has been down for long stretches, so every download takes
mirrors (tried first, in the order given, then the official URL), resumes an interrupted
transfer with an HTTP Range request, verifies the archive (SHA-256 when given, and the zip's
own CRCs) before extracting, refuses archive entries that would land outside the target
(absolute paths, ``..``, links), and extracts into a temporary directory that is renamed into
place only when complete: an interrupted run never leaves a half dataset that looks whole.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from ..errors import NetDissectError

BRODEN = ("broden1_224", "broden1_227", "broden1_384")
OFFICIAL_URL = "http://netdissect.csail.mit.edu/data/{name}.zip"
DATA_DIR_ENV = "NETDISSECT_DATA"
CHUNK = 1 << 20


class DownloadError(NetDissectError):
    """A dataset could not be downloaded, verified or extracted."""


def default_data_dir() -> Path:
    """Where datasets live: ``$NETDISSECT_DATA``, else ``~/.cache/netdissect/data``."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env) if env else Path.home() / ".cache" / "netdissect" / "data"


def is_complete(path: Path) -> bool:
    """A dataset directory that a download (or a person) finished: it holds ``index.csv``."""
    return (path / "index.csv").is_file() and (path / "images").is_dir()


def download_broden(
    name: str,
    directory: str | os.PathLike | None = None,
    urls: Sequence[str] = (),
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download and extract ``name`` (``broden1_224`` ...) into ``directory``; returns the dataset path.

    Args:
        name: the dataset (its archive unpacks to a top-level ``<name>/``).
        directory: the data directory (default :func:`default_data_dir`).
        urls: mirrors, tried in order before the official URL.
        sha256: expected SHA-256 of the archive (hex), checked before extracting.
        progress: show a progress bar.
        timeout: seconds without data before a connection is abandoned.
    """
    if name not in BRODEN:
        raise DownloadError(f"unknown dataset {name!r}: choose one of {', '.join(BRODEN)}")
    directory = Path(directory) if directory is not None else default_data_dir()
    target = directory / name
    if is_complete(target):
        return target
    directory.mkdir(parents=True, exist_ok=True)
    archive = directory / f"{name}.zip"
    if not archive.exists():
        failures = []
        for url in [*urls, OFFICIAL_URL.format(name=name)]:
            try:
                fetch(url, archive, progress=progress, timeout=timeout)
                break
            except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
                failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
        else:
            raise DownloadError(
                f"cannot download {name} ({'; '.join(failures)}). Fetch {name}.zip by hand (from a mirror "
                f"or another machine), put it at {archive} and run the command again, or pass --url MIRROR"
            )
    verify(archive, sha256)
    extract(archive, directory, name)
    archive.unlink()
    return target


def fetch(url: str, destination: Path, progress: bool = True, timeout: float = 60.0) -> None:
    """Download ``url`` to ``destination``, resuming from ``destination.part`` when it exists."""
    partial = destination.with_name(destination.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        resumed = have > 0 and response.status == 206
        if not resumed:
            have = 0  # the server ignored the range: start over
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        with (
            open(partial, "ab" if resumed else "wb") as out,
            tqdm(
                total=total, initial=have, unit="B", unit_scale=True, desc=destination.name, disable=not progress
            ) as bar,
        ):
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
    size = partial.stat().st_size
    if total is not None and size != total:
        raise OSError(f"transfer ended after {size} of {total} bytes (run again to resume)")
    os.replace(partial, destination)


def verify(archive: Path, sha256: str | None = None) -> None:
    """Check the archive's SHA-256 (when given) and the zip's integrity; a bad archive is deleted."""
    if sha256:
        digest = hashlib.sha256()
        with open(archive, "rb") as f:
            for block in iter(lambda: f.read(CHUNK), b""):
                digest.update(block)
        if digest.hexdigest().lower() != sha256.lower():
            archive.unlink()
            raise DownloadError(
                f"{archive.name} has SHA-256 {digest.hexdigest()}, expected {sha256.lower()}; "
                "the file was deleted: download it again"
            )
    try:
        with zipfile.ZipFile(archive) as z:
            bad = z.testzip()
    except zipfile.BadZipFile as exc:
        archive.unlink()
        raise DownloadError(f"{archive.name} is not a valid zip archive ({exc}); the file was deleted") from None
    if bad is not None:
        archive.unlink()
        raise DownloadError(f"{archive.name} is corrupt (entry {bad} fails its CRC); the file was deleted")


def _safe_members(z: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    members = []
    for info in z.infolist():
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or (path.parts and path.parts[0].endswith(":")):
            raise DownloadError(f"{archive.name} holds an unsafe path {info.filename!r}; nothing was extracted")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DownloadError(f"{archive.name} holds a link {info.filename!r}; nothing was extracted")
        members.append(info)
    return members


def extract(archive: Path, directory: Path, name: str) -> Path:
    """Extract ``archive`` (whose top-level folder is ``name``) into ``directory/name`` atomically."""
    target = directory / name
    with zipfile.ZipFile(archive) as z:
        members = _safe_members(z, archive)
        tops = {PurePosixPath(m.filename).parts[0] for m in members if m.filename.strip("/")}
        if tops != {name}:
            raise DownloadError(f"{archive.name} should unpack to one folder {name}/, found {sorted(tops)[:3]}")
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=directory))
        try:
            z.extractall(tmp, members)
            if not is_complete(tmp / name):
                raise DownloadError(f"{archive.name} does not hold a Broden dataset (no {name}/index.csv)")
            if target.exists():
                shutil.rmtree(target)  # an incomplete earlier copy
            os.replace(tmp / name, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target
