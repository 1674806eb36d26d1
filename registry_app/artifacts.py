"""Artifacts in the media storage: copy in with size and SHA-256, verify before serving or loading.

Everything goes through Django's storage API (never raw paths), so moving artifacts to S3-compatible object
storage is a settings change.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import threading
from collections import OrderedDict
from pathlib import Path
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponse, HttpResponseRedirect

from audioml import storage as media
from audioml.storage import download_url

logger = logging.getLogger("registry_app.artifacts")

CHUNK_SIZE = 1 << 20


class _HashingReader:
    """Wraps a binary file and hashes each byte the first time the storage backend reads it.

    Backends seek freely: S3 uploads seek to the end to learn the size, sign the payload before sending it and
    re-send a part after a network error. Bytes read again are not hashed again; a read that would skip bytes
    never hashed fails, so the digest always covers the whole file, in order, from a single pass over new bytes.
    """

    def __init__(self, handle: IO[bytes], name: str, size: int) -> None:
        self._handle = handle
        self.name = name
        self.size = size
        self.digest = hashlib.sha256()
        self.bytes_read = 0  # the first bytes_read bytes are in the digest

    def read(self, size: int = -1) -> bytes:
        start = self._handle.tell()
        if start > self.bytes_read:
            raise OSError("artifact copy skipped bytes it never read")
        data = self._handle.read(size)
        end = start + len(data)
        if end > self.bytes_read:
            self.digest.update(data[self.bytes_read - start:])
            self.bytes_read = end
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._handle.closed

    def close(self) -> None:
        self._handle.close()


def store_file(source: Path, storage_name: str) -> dict[str, Any]:
    """Copy ``source`` into the storage at ``storage_name``; return {name, path, size, sha256} of what was read.

    The storage may pick a different name if ``storage_name`` is taken; the returned ``path`` is the real one.
    """
    size = source.stat().st_size
    was_there = default_storage.exists(storage_name)
    with source.open("rb") as handle:
        reader = _HashingReader(handle, source.name, size)
        try:
            stored_as = default_storage.save(storage_name, File(reader, name=source.name))
        except BaseException:
            # A write that fails midway (a full disk) leaves a partial file behind on local storage.
            if not was_there:
                _discard(storage_name)
            raise
    if reader.bytes_read != size:
        default_storage.delete(stored_as)
        raise OSError(f"{source.name}: read {reader.bytes_read} of {size} bytes while copying")
    sha256 = reader.digest.hexdigest()
    # One request, no second read: the size, and on object storage the SHA-256 the server computed on receipt.
    stored_size, stored_checksum = media.size_and_checksum(stored_as)
    if stored_size != size:
        default_storage.delete(stored_as)
        raise OSError(f"{source.name}: the storage holds {stored_size} bytes, {size} were written")
    if stored_checksum is not None and stored_checksum != sha256:
        default_storage.delete(stored_as)
        raise OSError(f"{source.name}: the storage received SHA-256 {stored_checksum[:12]}…, {sha256[:12]}… was sent")
    return {"name": source.name, "path": stored_as, "size": size, "sha256": sha256}


def _discard(path: str) -> None:
    try:
        if default_storage.exists(path):
            default_storage.delete(path)
    except OSError:
        logger.exception("Could not remove the partial artifact %s", path)
    _remove_empty_folder(path.rsplit("/", 1)[0])


def stored_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with default_storage.open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()


def stored_stamp(path: str) -> tuple[int, float] | None:
    """(size, modification time) of a stored file, or None when it is missing: a cheap change detector."""
    try:
        return media.stamp(path)
    except OSError:
        return None


class _VerifiedMemo:
    """Remembers checksums by (path, size, mtime) so list pages need not re-hash unchanged files."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple, str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> str | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: tuple, value: str) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)


_memo = _VerifiedMemo()


def problem_with(entry: dict[str, Any], *, trust_unchanged: bool = False) -> str | None:
    """Why a stored artifact cannot be trusted, or None when its SHA-256 matches the recorded one.

    ``trust_unchanged`` reuses an earlier checksum of the same file when its size and modification time are
    unchanged (for pages listing many versions); downloads and model loads always hash the bytes.
    """
    path = entry["path"]
    stamp = stored_stamp(path)
    if stamp is None:
        return f"{entry['name']} is missing from the storage ({path})"
    if stamp[0] != entry["size"]:
        return f"{entry['name']} is {stamp[0]} bytes, {entry['size']} were registered"
    key = (path, *stamp)
    actual = _memo.get(key) if trust_unchanged else None
    fresh = actual is None
    if fresh:
        try:
            actual = stored_sha256(path)
        except OSError as error:
            return f"{entry['name']} cannot be read: {error}"
        _memo.put(key, actual)
    if actual != entry["sha256"]:
        if fresh:
            logger.error("Artifact %s: SHA-256 %s does not match the registered %s", path, actual, entry["sha256"])
        return f"{entry['name']} has SHA-256 {actual[:12]}…, but {entry['sha256'][:12]}… was registered"
    return None


def download_response(entry: dict[str, Any], filename: str) -> HttpResponse:
    """A checked artifact as a download: streamed from local storage, or a redirect to a short-lived presigned
    URL on object storage (the bytes go from the bucket to the client, not through a web thread)."""
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if url := download_url(entry["path"], filename, content_type, as_attachment=True):
        response = HttpResponseRedirect(url)
    else:
        response = FileResponse(default_storage.open(entry["path"], "rb"), as_attachment=True, filename=filename)
        response["Content-Length"] = str(entry["size"])
    response["X-Content-SHA256"] = entry["sha256"]
    return response


def copy_to_local(path: str, target: Path) -> Path:
    """A stored artifact copied to a local file (storages may be remote)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with default_storage.open(path, "rb") as source, open(target, "wb") as copy:
        while chunk := source.read(CHUNK_SIZE):
            copy.write(chunk)
    return target


def delete_stored(paths: list[str]) -> None:
    folders = set()
    for path in paths:
        try:
            default_storage.delete(path)
        except OSError:
            logger.exception("Could not delete stored artifact %s", path)
        folders.add(path.rsplit("/", 1)[0])
    # Deepest first, then up the tree: a voice's samples/ folder, its version folder, the model's folder.
    for folder in sorted(folders, key=lambda name: name.count("/"), reverse=True):
        while "/" in folder:
            _remove_empty_folder(folder)
            folder = folder.rsplit("/", 1)[0]


def clear_folder(folder: str) -> list[str]:
    """Delete the files in a storage folder (no sub-folders); returns their names."""
    try:
        _, files = default_storage.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    removed = []
    for name in files:
        default_storage.delete(f"{folder}/{name}")
        removed.append(name)
    if removed:
        logger.warning("Removed %d stale file(s) left in %s by an interrupted registration", len(removed), folder)
    return removed


def remove_empty_folder(folder: str) -> None:
    _remove_empty_folder(folder)


def _remove_empty_folder(folder: str) -> None:
    """Local storage keeps empty folders behind; object storages have none, so there is nothing to do."""
    try:
        local = Path(default_storage.path(folder))
    except NotImplementedError:
        return
    try:
        local.rmdir()
    except OSError:
        pass  # not empty or already gone
