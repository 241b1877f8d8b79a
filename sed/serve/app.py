"""The HTTP API: upload a recording, read its windows, progress, detections and report as NDJSON.

Endpoints:

- ``POST /detect``: the recording as the raw body (``?name=night.flac`` names it) or as the file
  field of a multipart form (``curl -F file=@night.flac``). Query: ``windows`` (default true: a
  line per scored window), ``top_k`` (labels per window line, default 3), ``gap`` (merge gap of
  the report in seconds, default the server's). Answers ``200`` with an
  ``application/x-ndjson`` stream (lines in :mod:`sed.serve.jobs`; the last is ``done`` or
  ``error``), or a JSON ``{"error": ...}`` with ``400`` (empty or malformed upload, bad
  parameter), ``413`` (over ``--max_upload_mb``), ``422`` (not readable as audio: the message
  says why) or ``429`` (``--max_jobs`` recordings in progress already; ``Retry-After`` set).
- ``GET /health``: ``{"status": "ok", "jobs": running, "max_jobs": ...}``; answers while jobs run
  (they run in worker threads, never on the event loop).
- ``GET /model``: classes, where the model came from, the path serving it (``engine``: ``lite``
  for an ``.onnx`` file on the torch-free path, else ``full``) and the settings results depend
  on.

Busy server: a request over ``max_jobs`` is refused at once with ``429`` (before its upload is
read) rather than queued: a queued multi-hour upload would hold disk and a connection for an
unknown time, and a client can retry when it suits it. A slot is held from the start of the
upload to the end of the job, so at most ``max_jobs`` temporary files exist at any time.

Temporary files: each upload is written to ``tmpdir`` and deleted when its job ends, fails, is
refused, or its client goes away (the job stops at its next block of audio).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

from sed.features.audio import AudioError
from sed.infer.lite.predict import audio_info  # sed.infer.stream's, without importing torch
from sed.serve.jobs import Job, JobCancelled, LineSender, ServedModel, ndjson
from sed.serve.upload import Upload, UploadError, receive_upload

log = logging.getLogger(__name__)

NDJSON = "application/x-ndjson"


@dataclass
class Limits:
    """What a server accepts.

    Attributes:
        max_upload_mb: largest recording, in MiB.
        max_jobs: recordings uploaded or scored at once; more are refused with 429.
        retry_after: seconds a refused client is told to wait.
    """

    max_upload_mb: float = 2048.0
    max_jobs: int = 2
    retry_after: int = 10

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


class Slots:
    """A count of jobs in progress, bounded; taken on the event loop, given back from any
    thread."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.used -= 1


class JobResources:
    """A job's upload and slot, given up exactly once by whoever finishes last with them."""

    def __init__(self, slots: Slots) -> None:
        self.slots = slots
        self.upload: Upload | None = None
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.upload is not None:
            self.upload.discard()
        self.slots.give()


class JobResponse(StreamingResponse):
    """A streamed job whose resources are freed even if the stream never starts (a client gone
    before the first byte): the worker, once started, frees them itself."""

    def __init__(
        self, content: AsyncIterator[bytes], resources: JobResources, sender: LineSender
    ) -> None:
        super().__init__(content, media_type=NDJSON)
        self.resources = resources
        self.sender = sender
        self.started = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if not self.started:
                self.resources.close()


def error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


def _flag(value: str | None, name: str, default: bool) -> bool:
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise UploadError(400, f"query parameter {name} must be true or false, got '{value}'")


def _number(value: str | None, name: str, default: float, low: float, high: float) -> float:
    if value is None:
        return default
    try:
        x = float(value)
    except ValueError:
        x = math.nan
    if not low <= x <= high:
        raise UploadError(
            400, f"query parameter {name} must be in [{low:g}, {high:g}], got '{value}'"
        )
    return x


def create_app(
    served: ServedModel, limits: Limits, tmpdir: str | Path, line_buffer: int = 256
) -> FastAPI:
    """The server's application.

    Args:
        served: the model (loaded once; every job shares it).
        limits: upload size and concurrent jobs.
        tmpdir: an existing folder for the uploads (each is deleted when its job ends).
        line_buffer: lines a job may send ahead of its client; then it waits for the client.
    """
    tmp = Path(tmpdir)
    if not tmp.is_dir():
        raise FileNotFoundError(f"{tmp}: temporary folder not found")
    slots = Slots(limits.max_jobs)
    executor = ThreadPoolExecutor(max_workers=limits.max_jobs, thread_name_prefix="sed-job")
    # the senders of running jobs, to stop them when the server stops (changed from threads)
    senders: set[LineSender] = set()
    senders_lock = threading.Lock()
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # stopping: running jobs stop at their next block, their files are deleted
        with senders_lock:
            for sender in senders:
                sender.cancelled.set()
        executor.shutdown(wait=True)

    app = FastAPI(
        title="sed detector",
        summary="Sound event detection on uploaded recordings, streamed as NDJSON",
        lifespan=lifespan,
    )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "jobs": slots.used,
            "max_jobs": limits.max_jobs,
            "uptime_seconds": round(time.time() - started, 1),
        }

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return served.info() | {
            "max_upload_mb": limits.max_upload_mb,
            "max_jobs": limits.max_jobs,
        }

    @app.post("/detect")
    async def detect(request: Request) -> Any:
        if not slots.take():
            return error(
                429,
                f"busy: {limits.max_jobs} recording(s) in progress (--max_jobs); "
                f"retry in {limits.retry_after} s",
                **{"Retry-After": str(limits.retry_after)},
            )
        res = JobResources(slots)
        handed_over = False
        try:
            q = request.query_params
            windows = _flag(q.get("windows"), "windows", True)
            top_k = int(_number(q.get("top_k"), "top_k", 3, 1, 1000))
            gap = _number(q.get("gap"), "gap", served.report_gap, 0, 86400)
            res.upload = await receive_upload(
                request.stream(),
                request.headers.get("content-type"),
                request.headers.get("content-length"),
                q.get("name"),
                tmp,
                limits.max_bytes,
            )
            upload = res.upload
            loop = asyncio.get_running_loop()
            try:
                info = await loop.run_in_executor(None, audio_info, upload.path)
                if info[0] == 0:
                    raise AudioError(f"{upload.path}: no audio samples")
            except AudioError as e:
                return error(422, str(e).replace(str(upload.path), upload.name))
            response = _stream_job(res, upload, info, windows, top_k, gap)
            with senders_lock:
                senders.add(response.sender)
            handed_over = True
            return response
        except UploadError as e:
            return error(e.status, e.message)
        except ClientDisconnect:
            log.info("client went away during its upload")
            return error(400, "client disconnected")
        finally:
            if not handed_over:
                res.close()

    def _stream_job(
        res: JobResources,
        upload: Upload,
        info: tuple[int, int, int],
        windows: bool,
        top_k: int,
        gap: float,
    ) -> JobResponse:
        """The streamed response of one job; its worker starts when the stream does."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        sender = LineSender(
            lambda line: loop.call_soon_threadsafe(queue.put_nowait, line), line_buffer
        )
        job = Job(served, upload.path, upload.name, info, sender, windows, top_k, gap)

        def work() -> None:
            final = None
            try:
                final = job.run()
            except JobCancelled:
                log.info("%s: stopped (client gone or server stopping)", upload.name)
            except Exception as e:  # a bug or a backend failure: the client gets the reason
                log.exception("%s: job failed", upload.name)
                final = {"type": "error", "status": 500, "error": f"{type(e).__name__}: {e}"}
            finally:
                # freed before the last line goes out: a client that sends its next recording
                # as soon as it reads this one's last line finds the slot free
                with senders_lock:
                    senders.discard(sender)
                res.close()
            if final is not None:
                sender.finish(ndjson(final))

        async def lines() -> AsyncIterator[bytes]:
            try:
                executor.submit(work)
            except RuntimeError:  # the executor is shut down: the server is stopping
                res.close()
                raise
            response.started = True  # from here on the worker frees the resources
            try:
                while True:
                    line = await queue.get()
                    sender.taken()
                    if line is None:
                        return
                    yield line
            finally:
                # normal end, or the client went away (the stream is cancelled): stop the job
                sender.cancelled.set()

        response = JobResponse(lines(), res, sender)
        return response

    return app
