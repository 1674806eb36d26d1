"""The media storage beyond Django's Storage API: what differs between local files and S3-compatible object storage.

Everything that stores or reads clips and artifacts goes through `default_storage`; this module holds the few
operations where the two kinds of storage need different code to stay cheap or correct:

- `stamp` and `walk`: size and modification time in one request per object (or per 1000 objects listed), and
  `existing`, which names are stored, from listings;
- `size_and_checksum`: the SHA-256 the bucket computed on receipt, so a writer verifies without reading back;
- `download_url`: a short-lived presigned URL, so the browser fetches audio (byte ranges included) and artifacts
  from the bucket directly instead of through a web thread (None on local storage: the app serves the file);
- `local_copy`: a file a training worker can read, from the media folder itself or from this machine's clip
  cache under AUDIOML_WORK_DIR (fetched once, reused by every later job on the same machine);
- `check_reachable` for the liveness probe.

No path in a job or a row may exist only on the machine that made it: rows hold storage names, and each machine
turns a name into a local file with `local_copy`.
"""

from __future__ import annotations

import base64
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import FileSystemStorage, default_storage

CLIP_CACHE = "clip-cache"


def is_local() -> bool:
    """True when the media storage is a folder on this machine (MEDIA_ROOT)."""
    return isinstance(default_storage, FileSystemStorage)


def _s3():
    """(boto3 client, bucket name, the storage itself) of the S3 storage."""
    return default_storage.connection.meta.client, default_storage.bucket_name, default_storage


def describe() -> str:
    """Where the media lives, for logs and reports: a folder, or s3://bucket/prefix at its endpoint."""
    if is_local():
        return str(settings.MEDIA_ROOT)
    _, bucket, storage = _s3()
    return f"s3://{bucket}/{storage.location}".rstrip("/") + f" at {storage.endpoint_url or 'AWS'}"


def stamp(name: str) -> tuple[int, float] | None:
    """(size, modification time) of a stored file with one request, or None when it is missing."""
    try:
        if is_local():
            info = os.stat(default_storage.path(name))
            return info.st_size, info.st_mtime
        client, bucket, storage = _s3()
        head = client.head_object(Bucket=bucket, Key=storage._normalize_name(name))
        return head["ContentLength"], head["LastModified"].timestamp()
    except FileNotFoundError:
        return None
    except Exception as error:  # noqa: BLE001 - botocore's errors: a 404 is "missing", anything else is raised
        if _status(error) == 404:
            return None
        raise


def _status(error: Exception) -> int | None:
    response = getattr(error, "response", None) or {}
    return response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def walk(folder: str) -> Iterator[tuple[str, int, float]]:
    """(name, size, modification time) of every file under a storage folder; on S3 one list request per 1000."""
    if is_local():
        root = Path(default_storage.path(folder))
        if not root.is_dir():
            return
        for path in sorted(root.rglob("*")):
            try:
                info = path.stat()
            except OSError:
                continue
            if path.is_file():
                yield path.relative_to(Path(default_storage.location)).as_posix(), info.st_size, info.st_mtime
        return
    client, bucket, storage = _s3()
    prefix = storage._normalize_name(folder.rstrip("/")) + "/"
    location = storage.location.rstrip("/") + "/" if storage.location else ""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", ()):
            yield entry["Key"][len(location):], entry["Size"], entry["LastModified"].timestamp()


def download_url(name: str, filename: str, content_type: str, *, as_attachment: bool) -> str | None:
    """A presigned GET URL valid for STORAGE_URL_EXPIRE_SECONDS that makes the bucket answer with this file name
    and type, or None on local storage. Byte ranges work on it, so players seek without the web process."""
    if is_local():
        return None
    disposition = "attachment" if as_attachment else "inline"
    parameters = {
        "ResponseContentDisposition": f'{disposition}; filename="{filename}"',
        "ResponseContentType": content_type,
        "ResponseCacheControl": "private, max-age=3600",
    }
    _, bucket, storage = _s3()
    client = _public_client(storage)
    return client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": storage._normalize_name(name), **parameters},
        ExpiresIn=settings.STORAGE_URL_EXPIRE_SECONDS,
    )


_public_clients: dict[tuple, object] = {}


def _public_client(storage):
    """The storage's client, or one for STORAGE_PUBLIC_ENDPOINT_URL when browsers reach the bucket by another
    address than the servers do (signing needs no network, only the address the browser will use)."""
    public = settings.STORAGE_PUBLIC_ENDPOINT_URL
    if not public or public == storage.endpoint_url:
        return storage.connection.meta.client
    key = (public, storage.access_key, storage.region_name)
    if key not in _public_clients:
        import boto3
        from botocore.config import Config

        _public_clients[key] = boto3.session.Session().client(
            "s3", endpoint_url=public, region_name=storage.region_name, aws_access_key_id=storage.access_key,
            aws_secret_access_key=storage.secret_key,
            config=Config(signature_version="s3v4", s3={"addressing_style": storage.addressing_style or "auto"}),
        )
    return _public_clients[key]


def existing(names: list[str]) -> set[str]:
    """Which of these stored names the storage holds. On S3 from listings of their folders (`clips/<dataset>`:
    one request per 1000 objects) rather than a request per name."""
    if is_local():
        return {name for name in names if default_storage.exists(name)}
    folders = {"/".join(name.split("/")[:2]) for name in names}
    listed = {found for folder in folders for found, _, _ in walk(folder)}
    return listed & set(names)


def forget_local_copy(name: str, cache_dir: Path | None = None) -> None:
    """Drop this machine's cached copy of a stored file the storage no longer holds (a clip deleted for good)."""
    if not is_local():
        (Path(cache_dir or Path(settings.WORK_DIR) / CLIP_CACHE) / name).unlink(missing_ok=True)


@dataclass
class LocalCopy:
    path: Path
    fetched_bytes: int  # 0 when the file was already on this machine


def local_copy(name: str, cache_dir: Path | None = None) -> LocalCopy:
    """A local file holding the stored file `name`: the media file itself on local storage; on object storage a
    copy in this machine's clip cache (`AUDIOML_WORK_DIR/clip-cache/<name>`), fetched once. Stored clips never
    change once written (their names are their content's hash), so a cached copy is never stale.

    Raises FileNotFoundError when the storage does not hold `name`."""
    if is_local():
        path = Path(default_storage.path(name))
        if not path.is_file():
            raise FileNotFoundError(name)
        return LocalCopy(path, 0)
    root = Path(cache_dir or Path(settings.WORK_DIR) / CLIP_CACHE)
    target = root / name
    if target.is_file():
        os.utime(target)  # most recently used: pruned last
        return LocalCopy(target, 0)
    target.parent.mkdir(parents=True, exist_ok=True)
    client, bucket, storage = _s3()
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            client.download_fileobj(bucket, storage._normalize_name(name), out)
        size = os.path.getsize(temporary)
        os.replace(temporary, target)
    except Exception as error:
        Path(temporary).unlink(missing_ok=True)
        if _status(error) == 404:
            raise FileNotFoundError(name) from None
        raise
    return LocalCopy(target, size)


def size_and_checksum(name: str) -> tuple[int, str | None]:
    """The size of a stored file and the SHA-256 (hex) the object storage computed over the whole object as it
    received it, with one request; the checksum is None where there is none to give: local storage, an upload in
    parts (its checksum covers the parts), a server without checksums. Lets a writer verify what it uploaded
    without reading the object back."""
    if is_local():
        return default_storage.size(name), None
    client, bucket, storage = _s3()
    head = client.head_object(Bucket=bucket, Key=storage._normalize_name(name), ChecksumMode="ENABLED")
    encoded = head.get("ChecksumSHA256")
    if not encoded or "-" in encoded or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return head["ContentLength"], None
    return head["ContentLength"], base64.b64decode(encoded).hex()


def check_reachable() -> str:
    """Cheap liveness check: the media folder is writable, or the bucket answers (HEAD bucket)."""
    try:
        if is_local():
            settings.MEDIA_ROOT.mkdir(parents=True, exist_ok=True)
            probe = settings.MEDIA_ROOT / ".health-probe"
            probe.write_bytes(b"ok")
            probe.unlink()
            return "ok"
        client, bucket, _ = _s3()
        client.head_bucket(Bucket=bucket)
        return "ok"
    except OSError as exc:
        return f"error: {exc.strerror or exc.__class__.__name__}"
    except Exception as exc:  # noqa: BLE001 - botocore errors: unreachable, forbidden, no such bucket
        status = _status(exc)
        return f"error: {exc.__class__.__name__}" + (f" (HTTP {status})" if status else "")

