"""Serving a clip's canonical WAV to staff (panel players and API downloads), with byte ranges for seeking; on
object storage a redirect to a short-lived presigned URL, which answers byte ranges itself."""

from __future__ import annotations

import re

from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseRedirect

from audioml.storage import download_url
from datasets_app.models import Clip

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def audio_response(request: HttpRequest, clip: Clip, *, as_attachment: bool = False) -> HttpResponse:
    storage, name = clip.audio.storage, clip.audio.name
    filename = f"{clip.dataset.name}-{clip.pk}.wav"
    if name and (url := download_url(name, filename, "audio/wav", as_attachment=as_attachment)):
        # Object storage: the browser fetches the bytes (and the ranges it seeks to) from the bucket itself.
        return HttpResponseRedirect(url)
    if not name or not storage.exists(name):
        raise Http404(f"The audio file of clip #{clip.pk} is missing from the storage.")
    size = storage.size(name)
    match = _RANGE.match(request.headers.get("Range", "").strip())
    if match and (match.group(1) or match.group(2)):
        if match.group(1):
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else size - 1
        else:
            start, end = max(size - int(match.group(2)), 0), size - 1
        if start >= size or start > end:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        end = min(end, size - 1)
        with storage.open(name, "rb") as handle:
            handle.seek(start)
            data = handle.read(end - start + 1)
        response = HttpResponse(data, status=206, content_type="audio/wav")
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    else:
        response = FileResponse(storage.open(name, "rb"), content_type="audio/wav", filename=filename, as_attachment=as_attachment)
    if as_attachment:
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    return response
