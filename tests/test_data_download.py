"""Verified downloads and safe, atomic tar extraction (datasets/download.py)."""
from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile

import pytest

from hashbench.datasets.download import download, extract_tar, verify
from hashbench.datasets.errors import DataError
from local_http_server import serve_folder

PAYLOAD = os.urandom(300_000) + b"end"


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "www"
    folder.mkdir()
    (folder / "blob.bin").write_bytes(PAYLOAD)
    with serve_folder(folder) as base:
        yield base


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_verified_by_sha256_and_md5(served, tmp_path):
    cache = tmp_path / "cache"
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    got = download(served + "blob.bin", cache / "a.bin", sha256=sha, progress=False)
    assert got == cache / "a.bin" and got.read_bytes() == PAYLOAD
    got = download(served + "blob.bin", cache / "b.bin", md5=hashlib.md5(PAYLOAD).hexdigest().upper(),
                   progress=True)
    assert got.read_bytes() == PAYLOAD
    assert _leftovers(cache) == ["a.bin", "b.bin"]  # no temporary files left behind
    assert verify(got, sha256=sha) == got


def test_wrong_checksum_leaves_nothing(served, tmp_path):
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(DataError) as err:
        download(served + "blob.bin", cache / "a.bin", sha256=wrong, progress=False)
    msg = str(err.value)
    assert wrong in msg and hashlib.sha256(PAYLOAD).hexdigest() in msg and served + "blob.bin" in msg
    assert _leftovers(cache) == []


def test_wrong_checksum_keeps_previous_good_file(served, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "a.bin").write_bytes(b"old")
    with pytest.raises(DataError):
        download(served + "blob.bin", cache / "a.bin", md5="0" * 32, progress=False)
    assert (cache / "a.bin").read_bytes() == b"old" and _leftovers(cache) == ["a.bin"]


def test_http_404_is_a_clear_error(served, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        download(served + "missing.bin", cache / "a.bin", md5="0" * 32, progress=False)
    msg = str(err.value)
    assert "404" in msg and served + "missing.bin" in msg and "--data-root" in msg
    assert _leftovers(cache) == []


def test_dropped_connection_leaves_nothing(served, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        download(served + "cut/blob.bin", cache / "a.bin", sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                 progress=False)
    msg = str(err.value)
    assert served + "cut/blob.bin" in msg and f"{len(PAYLOAD) // 2} of {len(PAYLOAD)} bytes" in msg
    assert _leftovers(cache) == []


def test_unreachable_server(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.tar.gz"
    with pytest.raises(DataError) as err:
        download(url, tmp_path / "cache" / "x.tar.gz", md5="0" * 32, progress=False)
    assert url in str(err.value) and "--data-root" in str(err.value)
    assert _leftovers(tmp_path / "cache") == []


def test_checksum_is_required(tmp_path):
    with pytest.raises(ValueError):
        download("http://127.0.0.1:9/x", tmp_path / "x")


def test_verify_reports_expected_and_got(tmp_path):
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    assert verify(f, md5=hashlib.md5(b"abc").hexdigest()) == f
    with pytest.raises(DataError) as err:
        verify(f, sha256="1" * 64)
    assert "1" * 64 in str(err.value) and hashlib.sha256(b"abc").hexdigest() in str(err.value)
    with pytest.raises(DataError):
        verify(tmp_path / "absent", md5="0" * 32)


# --------------------------------------------------------------------------- extraction

def _tar(path, entries):
    """Write a tar.gz; ``entries`` maps member name -> bytes (file), None (folder) or ('link', target)."""
    with tarfile.open(path, "w:gz") as tf:
        for name, content in entries.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            elif isinstance(content, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = content[1]
                tf.addfile(info)
            else:
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    return path


def test_extract_tar(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", {"top": None, "top/x.txt": b"x", "top/sub/y.bin": b"\0\1"})
    dest = extract_tar(archive, tmp_path / "cache" / "out")
    assert (dest / "top" / "x.txt").read_bytes() == b"x" and (dest / "top" / "sub" / "y.bin").read_bytes() == b"\0\1"
    assert _leftovers(tmp_path / "cache") == ["out"]
    # A finished extraction is final: a second call does not touch it.
    (dest / "top" / "x.txt").write_bytes(b"changed")
    assert extract_tar(archive, dest) == dest and (dest / "top" / "x.txt").read_bytes() == b"changed"


@pytest.mark.parametrize("entries", [
    {"ok.txt": b"1", "../escape.txt": b"evil"},
    {"ok.txt": b"1", "/abs/escape.txt": b"evil"},
    {"ok.txt": b"1", "a/../../escape.txt": b"evil"},
    {"ok.txt": b"1", "link": ("link", "/etc/passwd")},
])
def test_extract_refuses_escaping_members(tmp_path, entries):
    archive = _tar(tmp_path / "bad.tar.gz", entries)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        extract_tar(archive, cache / "out")
    assert "refusing" in str(err.value)
    assert _leftovers(cache) == [] and not (tmp_path / "escape.txt").exists()


def test_interrupted_extraction_never_looks_complete(tmp_path, monkeypatch):
    archive = _tar(tmp_path / "a.tar.gz", {"x.txt": b"x", "y.txt": b"y"})
    calls = []

    def die_midway(self, *args, **kwargs):
        calls.append(1)
        raise KeyboardInterrupt

    monkeypatch.setattr(tarfile.TarFile, "extractall", die_midway)
    with pytest.raises(KeyboardInterrupt):
        extract_tar(archive, tmp_path / "cache" / "out")
    assert calls and _leftovers(tmp_path / "cache") == []
    monkeypatch.undo()
    assert (extract_tar(archive, tmp_path / "cache" / "out") / "y.txt").read_bytes() == b"y"


def test_damaged_archive(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", {"x.bin": os.urandom(50_000)})
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError) as err:
        extract_tar(archive, tmp_path / "cache" / "out")
    assert str(archive) in str(err.value) and _leftovers(tmp_path / "cache") == []
