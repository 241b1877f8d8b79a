"""Uploads streamed to a temporary file: a raw body or the first file of a multipart form.

A recording may be hours long (a gigabyte of WAV), so the body is never held in memory: each chunk
the server receives is written to a file in the server's temporary folder as it arrives and
counted against the size limit. The file is deleted by whoever owns it last (:class:`Upload`'s
:meth:`~Upload.discard` is idempotent and thread-safe), whatever happens: success, a refused or
unreadable upload, an error, a client that goes away.
"""

from __future__ import annotations

import os
import re
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from python_multipart.multipart import MultipartParser, parse_options_header

from sed.infer.file_ids import AUDIO_SUFFIXES

# an oversized body is read and dropped up to this much past the limit before the 413 is sent:
# a client (httpx, requests) that sends its whole body before reading the response would see a
# reset connection instead of the answer if the server closed it mid-upload
DRAIN_BYTES = 16 * 2**20
# room for the multipart boundary and part headers around the file itself
FORM_OVERHEAD = 64 * 2**10


class UploadError(Exception):
    """An upload the server refuses; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Upload:
    """A temporary file holding one upload, deleted by :meth:`discard`.

    Attributes:
        path: the file (in the server's temporary folder).
        name: the client's file name (for messages and reports; never used as a path).
        size: bytes written.
    """

    def __init__(self, tmpdir: Path, name: str) -> None:
        suffix = Path(name).suffix.lower()
        # libsndfile sniffs most formats from their header; the suffix helps with the rest
        fd, tmp = tempfile.mkstemp(
            prefix="upload-", suffix=suffix if suffix in AUDIO_SUFFIXES else "", dir=tmpdir
        )
        self._file = os.fdopen(fd, "wb")
        self.path = Path(tmp)
        self.name = name
        self.size = 0
        self._lock = threading.Lock()
        self._discarded = False

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def close(self) -> None:
        """Finish writing (the file stays until :meth:`discard`)."""
        if not self._file.closed:
            self._file.close()

    def discard(self) -> None:
        """Close and delete the file; safe to call from any thread, any number of times."""
        with self._lock:
            if self._discarded:
                return
            self._discarded = True
        self.close()
        self.path.unlink(missing_ok=True)


def safe_name(name: str | None, default: str = "upload") -> str:
    """The last path component of a client's file name, printable characters only."""
    base = re.split(r"[/\\]", name or "")[-1]
    base = re.sub(r"[^\w.\- ]+", "_", base).strip(" .")
    return base[:200] or default


async def _drain(chunks: AsyncIterator[bytes], budget: int) -> None:
    """Read and drop what is left of a body, up to ``budget`` bytes (see :data:`DRAIN_BYTES`)."""
    seen = 0
    async for chunk in chunks:
        seen += len(chunk)
        if seen > budget:
            return


def _too_large(limit: int) -> UploadError:
    return UploadError(
        413, f"upload larger than the server's limit of {limit / 2**20:g} MB (--max_upload_mb)"
    )


async def receive_upload(
    chunks: AsyncIterator[bytes],
    content_type: str | None,
    content_length: str | None,
    name: str | None,
    tmpdir: Path,
    max_bytes: int,
) -> Upload:
    """Write a request body to a temporary file, chunk by chunk, within ``max_bytes``.

    Args:
        chunks: the body as it arrives (``starlette.requests.Request.stream()``).
        content_type: ``multipart/form-data; boundary=...`` (the first part with a file name,
            or the part named ``file``, is the recording; other fields are ignored) or anything
            else (the body is the recording).
        content_length: the declared body size, if any (an oversized one is refused before
            the body is read, or after reading and dropping it when it is not far over).
        name: the file name for a raw body (e.g. the ``name`` query parameter).
        tmpdir: where the file goes.
        max_bytes: largest recording accepted.

    Returns:
        The :class:`Upload` (closed; the caller owns it and must :meth:`~Upload.discard` it).

    Raises:
        UploadError: 413 too large, 400 an empty body or a form without a file.
        starlette.requests.ClientDisconnect: the client went away (nothing is left behind).
    """
    ctype, options = parse_options_header(content_type)
    form = ctype == b"multipart/form-data"
    limit = max_bytes + (FORM_OVERHEAD if form else 0)
    if content_length and content_length.isdigit() and int(content_length) > limit:
        if int(content_length) - limit <= DRAIN_BYTES:
            await _drain(chunks, DRAIN_BYTES + limit)
        raise _too_large(max_bytes)
    if form:
        if b"boundary" not in options:
            raise UploadError(400, "multipart/form-data without a boundary")
        return await _receive_form(chunks, options[b"boundary"], tmpdir, max_bytes)
    upload = Upload(tmpdir, safe_name(name))
    try:
        async for chunk in chunks:
            if upload.size + len(chunk) > max_bytes:
                await _drain(chunks, DRAIN_BYTES)
                raise _too_large(max_bytes)
            upload.write(chunk)
        upload.close()
        if upload.size == 0:
            raise UploadError(400, "empty upload: send the recording as the request body")
    except BaseException:
        upload.discard()
        raise
    return upload


async def _receive_form(
    chunks: AsyncIterator[bytes], boundary: bytes, tmpdir: Path, max_bytes: int
) -> Upload:
    """The file part of a multipart form, streamed to a temporary file (python-multipart's
    streaming parser: part data reaches the callbacks as it is parsed, nothing is buffered)."""
    state: dict = {"headers": {}, "field": b"", "upload": None, "target": None, "done": False}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        key = state["field"].lower()
        state["headers"][key] = state["headers"].get(key, b"") + data[start:end]

    def on_header_end() -> None:
        state["field"] = b""

    def on_headers_finished() -> None:
        disp = state["headers"].get(b"content-disposition", b"").decode("latin-1")
        _, params = parse_options_header(disp)
        is_file = b"filename" in params or params.get(b"name") == b"file"
        if is_file and state["upload"] is None and not state["done"]:
            fname = params.get(b"filename", b"").decode("utf-8", "replace")
            state["upload"] = state["target"] = Upload(tmpdir, safe_name(fname))
        state["headers"] = {}

    def on_part_data(data: bytes, start: int, end: int) -> None:
        target: Upload | None = state["target"]
        if target is not None:
            if target.size + (end - start) > max_bytes:
                raise _too_large(max_bytes)
            target.write(data[start:end])

    def on_part_end() -> None:
        if state["target"] is not None:
            state["done"] = True
        state["target"] = None

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    seen = 0
    try:
        async for chunk in chunks:
            seen += len(chunk)
            if seen > max_bytes + FORM_OVERHEAD:  # other fields count too
                await _drain(chunks, DRAIN_BYTES)
                raise _too_large(max_bytes)
            try:
                parser.write(chunk)
            except UploadError:
                await _drain(chunks, DRAIN_BYTES)
                raise
            except Exception as e:  # python-multipart's parse errors
                raise UploadError(400, f"malformed multipart form: {e}") from None
        parser.finalize()
        upload: Upload | None = state["upload"]
        if upload is None:
            raise UploadError(400, "the form has no file: send the recording as a file field")
        upload.close()
        if upload.size == 0:
            raise UploadError(400, f"{upload.name}: empty file")
    except BaseException:
        if state["upload"] is not None:
            state["upload"].discard()
        raise
    return upload
