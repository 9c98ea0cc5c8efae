"""Verified downloads and safe archive extraction into the data cache.

Contract: a file or folder at its final path in the cache is always complete and verified.
Downloads stream into a temporary file next to their destination, are checked against a pinned
sha256 or md5, and only then renamed into place (``os.replace`` is atomic within one file system).
Archives are extracted into a temporary sibling folder that is renamed when extraction is done, so
an interrupted download or extraction never leaves anything that looks finished.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from hashbench.datasets.errors import DataError

CHUNK = 1 << 20
TIMEOUT_S = 60.0


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str:
    """Hex digest of the file's bytes (``algorithm`` as named by `hashlib`)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected(sha256: str | None, md5: str | None) -> tuple[str, str]:
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    # A programming error, not a user's: every download in the project pins its checksum.
    raise ValueError("a checksum (sha256= or md5=) is required")


def verify(path: str | os.PathLike, *, sha256: str | None = None, md5: str | None = None) -> Path:
    """Check that ``path`` has the given sha256 (preferred) or md5; return the path.

    Raises `DataError` naming the file, the expected and the computed digest.
    """
    algorithm, want = _expected(sha256, md5)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"cannot verify {path}: no such file")
    got = file_digest(path, algorithm)
    if got != want:
        raise DataError(f"{path} has {algorithm} {got}, expected {want}: the file is corrupt or a "
                        f"different version; delete it and fetch it again")
    return path


def _network_advice(url: str, dest: Path) -> str:
    return (f"fetch {url} by hand (browser, curl or wget), put it in a folder as {dest.name!r} "
            f"and pass that folder with --data-root")


def download(url: str, dest: str | os.PathLike, *, sha256: str | None = None, md5: str | None = None,
             progress: bool = True) -> Path:
    """Fetch ``url`` into ``dest``, verified against ``sha256`` (preferred) or ``md5``.

    The bytes are written to a temporary file in ``dest``'s folder and hashed while streaming;
    ``dest`` appears (by atomic rename) only when the digest matches. On a network failure or a
    wrong checksum the temporary file is removed and `DataError` is raised with the URL; nothing
    is left in the cache. An existing ``dest`` is overwritten only by a verified download.
    """
    algorithm, want = _expected(sha256, md5)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = hashlib.new(algorithm)
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                    total = int(response.headers.get("Content-Length") or 0)
                    done, last = 0, 0.0
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        out.write(chunk)
                        h.update(chunk)
                        done += len(chunk)
                        if progress and time.monotonic() - last > 0.5:
                            last = time.monotonic()
                            _show(dest.name, done, total)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                # http.client.IncompleteRead (a cut connection) is an HTTPException, also caught below.
                raise DataError(f"could not download {url}: {exc}; {_network_advice(url, dest)}") from exc
            except Exception as exc:  # http.client.HTTPException and kin: a broken response
                raise DataError(f"could not download {url}: {exc!r}; {_network_advice(url, dest)}") from exc
        if progress:
            _show(dest.name, done, total, end="\n")
        if total and done != total:  # urllib returns a short body silently when the connection drops
            raise DataError(f"could not download {url}: the connection dropped after {done} of {total} bytes; "
                            f"try again, or {_network_advice(url, dest)}")
        got = h.hexdigest()
        if got != want:
            raise DataError(f"checksum mismatch for {url}: expected {algorithm} {want}, got {got}; "
                            f"the download was discarded. If this repeats, the file at that address "
                            f"changed: {_network_advice(url, dest)}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _show(name: str, done: int, total: int, end: str = "") -> None:
    size = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
    print(f"\rdownloading {name}: {size}", end=end, file=sys.stderr, flush=True)


def _check_member(member: tarfile.TarInfo, archive: Path) -> None:
    """Refuse members that would land outside the target folder or are not plain files/folders."""
    name = PurePosixPath(member.name)
    if name.is_absolute() or ".." in name.parts or member.name.startswith(("/", "\\")):
        raise DataError(f"refusing to extract {archive}: member {member.name!r} would escape the target folder")
    if not (member.isfile() or member.isdir()):
        # Links and device files are never part of the data archives we read; a link can point outside.
        raise DataError(f"refusing to extract {archive}: member {member.name!r} is a link or special file")


def extract_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Extract ``archive`` (any tar compression) so that its members end up under ``dest``.

    Every member is checked first (no absolute paths, no ``..``, no links or devices); extraction
    goes to a temporary sibling folder renamed to ``dest`` at the end. If ``dest`` already exists
    it is taken as complete (it can only exist after a finished extraction) and returned as is.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial"))
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                for member in members:
                    _check_member(member, archive)
                tf.extractall(tmp, members=members, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"cannot extract {archive}: {exc}; the archive is damaged or not a tar file, "
                            f"fetch it again") from exc
        try:
            os.rename(tmp, dest)
        except OSError:
            if not dest.is_dir():  # another process may have finished the same extraction first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
