"""Importing folders and zip archives: both layouts (a folder per label, or a manifest CSV / LJSpeech
metadata.csv), archive safety checks, and the non-audio files that travel with audio collections.

The audio files found are handed to datasets_app.ingest.ingest_files; an archive is refused as a whole
(ImportRejected) before anything is stored when it is unsafe, oversized or has an unreadable manifest.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import posixpath
import re
import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from django.conf import settings

from audioml.errors import is_out_of_space
from datasets_app.ingest import FileResult, IngestItem, IngestReport, Progress, ingest_files
from datasets_app.models import Clip, Dataset

logger = logging.getLogger(__name__)

# Files that are never audio: skipped (and listed as skipped) when importing folders and archives.
NON_AUDIO_SUFFIXES = {
    ".txt", ".md", ".rst", ".csv", ".tsv", ".json", ".jsonl", ".yaml", ".yml", ".xml", ".html", ".htm", ".pdf",
    ".py", ".sh", ".ini", ".cfg", ".toml", ".jpg", ".jpeg", ".png", ".gif", ".svg", ".lab", ".textgrid", ".db",
}
DOCUMENT_STEMS = {"README", "LICENSE", "LICENCE", "COPYING", "CHANGELOG", "NOTICE", "AUTHORS"}
# macOS and Windows clutter (besides names starting with "." and __MACOSX/ folders), compared in lower case.
HIDDEN_FILE_NAMES = {"thumbs.db", "desktop.ini"}


class ImportRejected(Exception):
    """A whole archive or folder refused before any file was stored (unsafe entries, zip bomb, bad manifest)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


MANIFEST_NAMES = ("manifest.csv", "metadata.csv")
MANIFEST_COLUMNS = ("file", "label", "transcript", "score", "speaker", "notes", "source", "kind")


def skipped_file_rule() -> dict[str, list[str]]:
    """The files an import skips, for the panel's script to leave the same ones out of dropped folders."""
    return {"suffixes": sorted(NON_AUDIO_SUFFIXES), "stems": sorted(DOCUMENT_STEMS), "hidden_names": sorted(HIDDEN_FILE_NAMES)}


@dataclass
class _Entry:
    """A file found in a folder or an archive: its relative POSIX path and how to read it."""

    relative: str
    path: Path | None = None  # on disk (folders, or archive members extracted to a private temp folder)


def import_path(
    dataset: Dataset,
    path: Path,
    user=None,
    progress: Progress | None = None,
    default_label: str = "",
    background: bool = False,
    default_source: str = "",
) -> IngestReport:
    """Import a folder or a zip archive on this machine (both layouts: folder-per-label, or a manifest CSV /
    LJSpeech metadata.csv). `default_label` labels files that get no label from the layout and `default_source`
    is the source of files whose manifest row names none; `background` makes every file a background recording
    (otherwise a manifest's `kind` column says which are)."""
    path = Path(path)
    if path.is_dir():
        entries = [
            _Entry(file.relative_to(path).as_posix(), file)
            for file in sorted(path.rglob("*"))
            if file.is_file() and not _is_hidden(file.relative_to(path).as_posix())
        ]
        return _import_entries(dataset, entries, user, progress, default_label, background, default_source)
    if path.is_file():
        with open(path, "rb") as archive:
            return import_archive(dataset, archive, user, progress, default_label, background, default_source)
    raise FileNotFoundError(f"{path} is neither a folder nor a file")


def import_archive(
    dataset: Dataset,
    archive: IO[bytes],
    user=None,
    progress: Progress | None = None,
    default_label: str = "",
    background: bool = False,
    default_source: str = "",
) -> IngestReport:
    """Import a zip archive (file object). Raises ImportRejected for unsafe or oversized archives."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise ImportRejected("not a valid zip archive") from None
    with zf:
        members = check_archive(zf, _archive_size(archive))
        work = Path(settings.WORK_DIR) / "ingest"
        work.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work, prefix="archive-") as folder:
            entries = []
            for number, info in enumerate(members):
                # Members are extracted under generated names; the member's own name is never a path here.
                target = Path(folder) / f"{number:06d}{_safe_suffix(info.filename)}"
                try:
                    with zf.open(info) as source, open(target, "wb") as out:
                        shutil.copyfileobj(source, out, 1024 * 1024)
                except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                    target.unlink(missing_ok=True)
                    if is_out_of_space(exc):
                        raise  # the server's disk, not the archive: answered as 507
                    entries.append(_Entry(info.filename, None))
                    logger.info("Archive member %r unreadable: %s", info.filename, exc)
                    continue
                entries.append(_Entry(info.filename, target))
            return _import_entries(dataset, entries, user, progress, default_label, background, default_source)


def check_archive(zf: zipfile.ZipFile, archive_size: int) -> list[zipfile.ZipInfo]:
    """The archive's file members, after refusing unsafe archives as a whole (with the first offending entry)."""
    infos = zf.infolist()
    if len(infos) > settings.ZIP_MAX_ENTRIES:
        raise ImportRejected(
            f"the archive has {len(infos)} entries; at most {settings.ZIP_MAX_ENTRIES} are accepted (ZIP_MAX_ENTRIES)"
        )
    total = 0
    members = []
    for info in infos:
        name = info.filename
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            raise ImportRejected(f"entry {name!r} has an absolute path; archives with such entries are refused")
        parts = re.split(r"[\\/]", name)
        if ".." in parts:
            raise ImportRejected(f"entry {name!r} contains '..'; archives with such entries are refused")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ImportRejected(f"entry {name!r} is a symbolic link; archives with links are refused")
        if info.is_dir():
            continue
        if info.compress_size and info.file_size / info.compress_size > settings.ZIP_MAX_RATIO and info.file_size > 1024 * 1024:
            raise ImportRejected(
                f"entry {name!r} expands {info.file_size / info.compress_size:.0f}-fold "
                f"(more than ZIP_MAX_RATIO={settings.ZIP_MAX_RATIO}); this looks like a zip bomb and is refused"
            )
        total += info.file_size
        if not _is_hidden(name):
            members.append(info)
    if archive_size and total > max(archive_size, 1) * settings.ZIP_MAX_RATIO:
        raise ImportRejected(
            f"the archive expands to {total / archive_size:.0f} times its size "
            f"(more than ZIP_MAX_RATIO={settings.ZIP_MAX_RATIO}); this looks like a zip bomb and is refused"
        )
    return members


def _archive_size(archive: IO[bytes]) -> int:
    size = getattr(archive, "size", None)
    if isinstance(size, int) and size > 0:
        return size
    try:
        position = archive.tell()
        archive.seek(0, os.SEEK_END)
        size = archive.tell()
        archive.seek(position)
        return size
    except (OSError, AttributeError):
        return 0


def _safe_suffix(name: str) -> str:
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,6}", suffix) else ""


def _is_document(relative: str) -> bool:
    """Text that travels with audio collections (README, LICENSE, CSV files, images): never decoded."""
    name = PurePosixPath(relative)
    return name.suffix.lower() in NON_AUDIO_SUFFIXES or name.stem.upper() in DOCUMENT_STEMS


def _is_hidden(relative: str) -> bool:
    """macOS and Windows clutter that is never data: __MACOSX/, .DS_Store, ._AppleDouble files, Thumbs.db."""
    parts = [part for part in re.split(r"[\\/]", relative) if part]
    if not parts:
        return True
    return (
        any(part.startswith(".") or part == "__MACOSX" for part in parts)
        or parts[-1].lower() in HIDDEN_FILE_NAMES
    )


def _import_entries(
    dataset: Dataset, entries: list[_Entry], user, progress: Progress | None, default_label: str,
    background: bool = False, default_source: str = "",
) -> IngestReport:
    entries = _strip_common_root(entries)
    manifest = _find_manifest(entries)
    unreadable = [entry for entry in entries if entry.path is None]
    readable = [entry for entry in entries if entry.path is not None]
    skipped: list[str] = []
    if manifest is not None:
        layout, items, extra_results = _items_from_manifest(manifest, readable, default_label, background,
                                                            default_source)
        skipped = [entry.relative for entry in readable if entry is not manifest and _is_document(entry.relative)]
    else:
        layout, extra_results = "folders", []
        items = []
        for entry in readable:
            if _is_document(entry.relative):
                skipped.append(entry.relative)
                continue
            parent = PurePosixPath(entry.relative).parent
            label = parent.name if parent.name else default_label
            items.append(IngestItem(name=entry.relative, path=entry.path, label=label, source=default_source,
                                    background=background))
    report = ingest_files(dataset, items, user=user, progress=progress)
    report.files.extend(extra_results)
    report.files.extend(
        FileResult(entry.relative, False, code="unreadable", reason="could not be read from the archive (corrupt entry)")
        for entry in unreadable
    )
    report.skipped = skipped
    report.layout = layout
    return report


def _strip_common_root(entries: list[_Entry]) -> list[_Entry]:
    """`data/yes/1.wav`, `data/no/2.wav` (a zipped folder) reads like `yes/1.wav`, `no/2.wav`.

    A lone folder of files (`yes/1.wav`, `yes/2.wav`) keeps its name: there it is the label."""
    while entries:
        heads = {entry.relative.split("/", 1)[0] for entry in entries}
        if len(heads) != 1 or any("/" not in entry.relative for entry in entries):
            break
        stripped = [_Entry(entry.relative.split("/", 1)[1], entry.path) for entry in entries]
        nested = all("/" in entry.relative for entry in stripped if not _is_document(entry.relative))
        has_manifest = any(entry.relative.lower() in MANIFEST_NAMES for entry in stripped)
        if not (nested or has_manifest):
            break
        entries = stripped
    return entries


def _find_manifest(entries: list[_Entry]) -> _Entry | None:
    by_name = {entry.relative.lower(): entry for entry in entries if entry.path is not None}
    for name in MANIFEST_NAMES:
        if name in by_name:
            return by_name[name]
    for name, entry in sorted(by_name.items()):
        if "/" not in name and name.endswith((".csv", ".tsv")) and "file" in _header_columns(_read_text(entry.path)):
            return entry
    return None


def _read_text(path: Path, name: str | None = None) -> str:
    """A CSV's text: UTF-8 (with or without a BOM) or UTF-16 with a BOM (Excel's "Unicode text").

    With `name` (the manifest being imported) anything else is refused rather than guessed at: a wrong guess
    would silently garble every transcript. Without it (only sniffing a header) undecodable bytes are replaced.
    """
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return raw.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if name is None:
            return raw.decode("utf-8", errors="replace")
        line = raw[: exc.start].count(b"\n") + 1
        raise ImportRejected(
            f"{name} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8 "
            "(in Excel: \"CSV UTF-8\") and import it again"
        ) from None


def _header_columns(text: str) -> list[str]:
    first = text.splitlines()[:1]
    if not first or "|" in first[0]:
        return []
    return [column.strip().strip('"').lower() for column in re.split(r"[,;\t]", first[0])]


def _items_from_manifest(
    manifest: _Entry, entries: list[_Entry], default_label: str, background: bool = False, default_source: str = ""
) -> tuple[str, list[IngestItem], list[FileResult]]:
    """Items for the audio files a manifest lists; listed-but-missing and unlisted audio files are reported.
    A row's own `source` wins over `default_source` (the batch's)."""
    manifest_name = PurePosixPath(manifest.relative).name
    text = _read_text(manifest.path, manifest_name)
    base = posixpath.dirname(manifest.relative)
    audio_entries = {
        posixpath.normpath(entry.relative): entry
        for entry in entries
        if entry is not manifest and not _is_document(entry.relative)
    }
    columns = _header_columns(text)
    rows: list[dict] = []
    if "file" in columns:
        layout = "manifest"
        first_line = text.splitlines()[0]
        delimiter = max(",;\t", key=first_line.count)
        reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
        reader.fieldnames = [name.strip().strip('"').lower() for name in reader.fieldnames or []]
        for row in reader:
            reference = (row.get("file") or "").strip()
            if not reference:
                continue
            label = (row.get("label") or "").strip()
            rows.append({
                "reference": reference,
                "candidates": [reference],
                "label": label or default_label,
                "transcript": row.get("transcript") or "",
                "score": row.get("score"),
                "speaker": row.get("speaker") or "",
                "notes": row.get("notes") or "",
                "source": (row.get("source") or "").strip() or default_source,
                "kind": "background" if background else (row.get("kind") or "").strip().lower() or "clip",
            })
    elif manifest_name.lower() == "metadata.csv":
        # LJSpeech: id|transcript|normalized transcript, no header, no quoting; audio in wavs/<id>.wav.
        # The normalized transcript (numbers and abbreviations spelled out) is kept when present.
        layout = "ljspeech"
        for row in csv.reader(io.StringIO(text), delimiter="|", quoting=csv.QUOTE_NONE):
            if not row or not row[0].strip():
                continue
            clip_id = row[0].strip()
            raw = row[1] if len(row) > 1 else ""
            normalised = row[2] if len(row) > 2 else ""
            rows.append({
                "reference": clip_id,
                "candidates": [f"wavs/{clip_id}.wav", f"{clip_id}.wav", f"wavs/{clip_id}", clip_id],
                "label": default_label,
                "transcript": (normalised or raw).strip(),
                "score": None, "speaker": "", "notes": "", "source": default_source,
                "kind": "background" if background else "clip",
            })
    else:
        raise ImportRejected(
            f"{manifest_name} has no 'file' column: its first line must be a header with 'file' and any of "
            + ", ".join(MANIFEST_COLUMNS[1:])
        )
    items: list[IngestItem] = []
    extra: list[FileResult] = []
    used: set[str] = set()
    for row in rows:
        found = None
        for candidate in row["candidates"]:
            relative = posixpath.normpath(posixpath.join(base, candidate.replace("\\", "/")))
            if relative in audio_entries:
                found = audio_entries[relative]
                break
        if found is None:
            extra.append(FileResult(
                row["reference"], False, code="missing", reason=f"listed in {manifest_name} but not found next to it"
            ))
            continue
        key = posixpath.normpath(found.relative)
        if key in used:
            extra.append(FileResult(row["reference"], False, code="duplicate", reason=f"listed more than once in {manifest_name}"))
            continue
        used.add(key)
        if row["kind"] not in Clip.Kind.values:
            extra.append(FileResult(found.relative, False, code="invalid-kind",
                                    reason=f"invalid kind {row['kind']!r} in {manifest_name}: use clip or background"))
            continue
        items.append(IngestItem(
            name=found.relative, path=found.path, label=row["label"], transcript=row["transcript"],
            score=row["score"], speaker=row["speaker"], notes=row["notes"], source=row["source"],
            background=row["kind"] == "background",
        ))
    for relative in sorted(set(audio_entries) - used):
        extra.append(FileResult(
            relative, False, code="not-in-manifest", reason=f"not listed in {manifest_name}, so it was not imported"
        ))
    return layout, items, extra
