"""Dataset downloads that resume, verify every file and never leave a half-written dataset.

:func:`fetch` downloads one file into ``<dest>.part`` (resumed with an HTTP ``Range`` request when a previous
attempt was cut, restarted when the server ignores the range), checks its size and checksum, and only then
renames it to ``dest``; a file that fails its check is downloaded once more from the start, then refused.
:func:`install_dataset` builds a dataset in ``<out>.partial/`` and renames it to ``<out>`` when every file is
in place, so ``<out>`` is either absent or complete; an interrupted download continues from ``<out>.partial/``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.errors import MedlitError

__all__ = [
    "COMPLETE_MARK",
    "expect_hash",
    "expect_s3_etag",
    "fetch",
    "file_hash",
    "git_blob_sha1",
    "head",
    "install_dataset",
    "read_url",
    "s3_etag",
]

COMPLETE_MARK = ".medlit-download.json"
"""Written last into a downloaded dataset: what it is and where it came from."""

_CHUNK = 1 << 20


def file_hash(path: Path, hash_type: str = "sha256") -> str:
    """Hex digest of a file (``md5``, ``sha1``, ``sha256``...)."""
    digest = hashlib.new(hash_type)
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    """The git object id of a file's content (what a git tree lists for it): sha1 of ``blob <size>\\0<bytes>``."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_url(url: str, timeout: float = 60.0) -> bytes:
    """The body of a small resource (an index, a list file); one clear error when it cannot be read."""
    request = urllib.request.Request(url, headers={"User-Agent": "medlit"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise MedlitError(f"{url}: could not be read ({_reason(error)})") from error


def _reason(error: BaseException) -> str:
    return str(getattr(error, "reason", None) or error)


def _download(url: str, part: Path, timeout: float) -> None:
    """Append the rest of ``url`` to ``part`` (a ``Range`` request from its size), or rewrite it when the server
    sends the whole file."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "medlit"} | ({"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
            mode = "ab" if have and response.status == 206 else "wb"  # 200: the server ignored the range
            with part.open(mode) as file:
                shutil.copyfileobj(response, file, _CHUNK)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to send: the part is already whole (the check decides)
            return
        raise MedlitError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise MedlitError(f"{url}: download interrupted ({_reason(error)}); run again to resume") from error


def fetch(
    url: str,
    dest: Path,
    *,
    check: Callable[[Path], str | None],
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``<dest>.part``) and return ``dest``.

    Args:
        url: What to download.
        dest: Where the checked file goes; an existing ``dest`` is kept (it was checked when it was written).
        check: Returns ``None`` when the downloaded file is right, else what is wrong with it (e.g. a checksum
            mismatch); a wrong file is downloaded once more from the start, then refused.
        timeout: Seconds without data before an attempt fails.
    """
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in (1, 2):
        _download(url, part, timeout)
        problem = check(part)
        if problem is None:
            part.replace(dest)
            return dest
        part.unlink()  # a resumed part may hold stale bytes: the second attempt starts from nothing
        if attempt == 2:
            raise MedlitError(f"{url}: {problem} (downloaded twice); nothing was kept")
    raise AssertionError("unreachable")


def expect_hash(expected: str, hash_type: str = "sha256", size: int | None = None) -> Callable[[Path], str | None]:
    """A :func:`fetch` check: the file has this size (when given) and this checksum."""

    def check(path: Path) -> str | None:
        if size is not None and path.stat().st_size != size:
            return f"{path.stat().st_size} bytes where {size} were expected"
        actual = git_blob_sha1(path) if hash_type == "git-blob" else file_hash(path, hash_type)
        return None if actual == expected else f"{hash_type} {actual} does not match the published {expected}"

    return check


def head(url: str, timeout: float = 60.0) -> tuple[int | None, str | None]:
    """``(Content-Length, ETag)`` of ``url`` by a ``HEAD`` request (``None`` where the server sends none)."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "medlit"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            etag = response.headers.get("ETag")
    except urllib.error.HTTPError as error:
        raise MedlitError(f"{url}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise MedlitError(f"{url}: could not be reached ({_reason(error)})") from error
    return (int(length) if length else None), (etag.strip('"') if etag else None)


def s3_etag(path: Path, part_size: int | None = None) -> str:
    """The ETag S3 gives ``path``'s content: its md5, or for a multipart upload of ``part_size`` bytes per part the
    md5 of the parts' md5s followed by ``-<parts>``."""
    if part_size is None:
        return file_hash(path, "md5")
    return _multipart_etags(path, [part_size])[0]


def _multipart_etags(path: Path, part_sizes: list[int]) -> list[str]:
    """The multipart ETags of ``path`` for each part size, in one pass over the file (1 MiB reads)."""
    parts: list[list[bytes]] = [[] for _ in part_sizes]
    running = [hashlib.md5() for _ in part_sizes]
    filled = [0 for _ in part_sizes]
    with path.open("rb") as file:
        for chunk in iter(lambda: file.read(_CHUNK), b""):
            for i, size in enumerate(part_sizes):
                view = memoryview(chunk)
                while view:  # a part boundary may fall inside the chunk
                    take = min(len(view), size - filled[i])
                    running[i].update(view[:take])
                    filled[i] += take
                    view = view[take:]
                    if filled[i] == size:
                        parts[i].append(running[i].digest())
                        running[i], filled[i] = hashlib.md5(), 0
    for i in range(len(part_sizes)):
        if filled[i]:
            parts[i].append(running[i].digest())
    return [f"{hashlib.md5(b''.join(p)).hexdigest()}-{len(p)}" for p in parts]


def expect_s3_etag(etag: str, size: int | None) -> Callable[[Path], str | None]:
    """A :func:`fetch` check for files on S3 (where no checksum is published): the size the server announced and
    the ETag it sends, which is the content's md5 (single-part uploads) or the md5 of the parts' md5s (multipart:
    every whole number of MiB that splits the file into the announced number of parts is tried, in one pass)."""

    def check(path: Path) -> str | None:
        actual_size = path.stat().st_size
        if size is not None and actual_size != size:
            return f"{actual_size} bytes where the server announced {size}"
        if "-" not in etag:
            actual = s3_etag(path)
            return None if actual == etag else f"md5 {actual} does not match the server's ETag {etag}"
        parts = int(etag.rsplit("-", 1)[1])
        sizes = [m << 20 for m in range(1, 5121) if (parts - 1) * (m << 20) < actual_size <= parts * (m << 20)]
        if etag in _multipart_etags(path, sizes[:64]):
            return None
        tried = f"{len(sizes[:64])} part sizes" if sizes else "no whole-MiB part size fits"
        return f"no multipart md5 matches the server's ETag {etag} ({tried})"

    return check


@contextmanager
def install_dataset(out: Path, description: dict[str, Any]) -> Iterator[Path | None]:
    """The folder to build a dataset in, renamed to ``out`` when the block ends without error.

    Yields ``None`` when ``out`` already holds a completed download (nothing to do). The partial folder survives
    an error or an interruption, so the next call continues from what was already checked. Refuses an ``out``
    that exists without being a completed download (it is never overwritten).
    """
    if (out / COMPLETE_MARK).is_file():
        yield None
        return
    if out.exists() and not out.is_dir():
        raise MedlitError(f"{out} is a file; --out names the dataset folder to create")
    if out.exists() and any(out.iterdir()):
        raise MedlitError(f"{out} exists and is not a dataset downloaded by medlit; choose an empty or new --out")
    partial = out.with_name(out.name + ".partial")
    partial.mkdir(parents=True, exist_ok=True)
    yield partial
    stray = sorted(str(p.relative_to(partial)) for p in partial.rglob("*.part"))
    if stray:
        raise MedlitError(f"{partial}: unfinished downloads remain ({', '.join(stray[:3])}); run again to resume")
    record = {**description, "downloaded": time.strftime("%Y-%m-%d %H:%M:%S")}
    (partial / COMPLETE_MARK).write_text(json.dumps(record, indent=2) + "\n")
    if out.exists():
        out.rmdir()  # empty (checked above)
    partial.rename(out)
