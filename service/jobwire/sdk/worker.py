"""Worker SDK: run a handler for every ``job.created`` of one operation.

    async def convert(job: JobContext) -> dict:
        await job.progress(1, 2, stage="converting")
        return {"pages": 3}

    async with Worker(settings, "convert", convert) as worker:
        await worker.run()

The worker is a consumer-group member on ``jobs.events``. It folds the events of its own jobs
locally (the shared fold), so it knows when a job was canceled or already finished, and on a
replay after a crash it resumes a job that was processing instead of starting it twice. A
``job.created`` offset is committed only after that job's outcome is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jobwire import tracing
from jobwire.config import Settings
from jobwire.deadlines import EXPIRED, TIMEOUT
from jobwire.errors import InvalidEvent, JobwireError, LogError
from jobwire.events import HEARTBEAT, Event, new_event
from jobwire.kafka.clients import make_producer
from jobwire.kafka.readers import GroupConsumer
from jobwire.kafka.writers import JobEvents
from jobwire.lifecycle import Job, Status, apply
from jobwire.offsets import OffsetTracker
from jobwire.records import LogRecord, skipped
from jobwire.storage import BlobStore, open_store, spool_dir
from jobwire.storage.files import FileRecord, clean_filename, content_key, save
from jobwire.storage.spool import discarding, spool_bytes
from jobwire.topics import Topics

log = logging.getLogger(__name__)


class JobExpired(JobwireError):
    """Raised by a publish for a job that already failed on a deadline (``timeout``/``expired``):
    its outcome can no longer count. The worker stops the handler when it learns of the expiry."""

    def __init__(self, job: Job) -> None:
        error = job.error or {}
        super().__init__(f"job {job.id} has {error.get('code', 'expired')}: {error.get('message', '')}")
        self.job = job


class JobFailed(JobwireError):
    """Raise from a handler to fail the job with an error code of your choosing."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None, *, retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Result:
    """Return this from a handler for a result with a download URL and checksum."""

    result: dict[str, Any]
    result_url: str | None = None
    result_url_expires_at: str | None = None
    result_checksum: dict[str, str] | None = None
    #: A result stored as a file (``JobContext.store_result`` makes it).
    result_file: dict[str, Any] | None = None


@dataclass
class JobContext:
    """What a handler sees of its job, and how it reports progress."""

    job: Job
    _publish: Callable[[str, dict[str, Any]], Awaitable[None]]
    cancel_requested: bool = False
    _files: FileAccess | None = None

    @property
    def input(self) -> dict[str, Any] | None:
        """The job's input file (``file_id``, ``filename``, ``content_type``, ``size``, ``sha256``)."""
        return self.job.input

    async def read_input(self) -> bytes:
        """The input file's bytes (a job submitted with ``input``), whole in memory: for a large
        one, ``input_chunks``."""
        return b"".join([chunk async for chunk in self.input_chunks()])

    def input_chunks(self) -> AsyncIterator[bytes]:
        """The input file as it is read, checked against its sha256 once read through."""
        if self.job.input is None or self._files is None:
            raise JobFailed("no_input", "the job has no input file", retryable=False)
        return self._files.chunks(self.job.tenant, self.job.input)

    async def store_result(self, data: bytes, *, filename: str, content_type: str = "application/octet-stream",
                           result: dict[str, Any] | None = None) -> Result:
        """Store ``data`` as the job's result file: return what this gives from the handler.
        The API streams it (``GET /v1/files/{id}/content``) and hands out a fresh signed URL
        on every read of the job, with its sha256 as ``result_checksum``."""
        if self._files is None:
            raise RuntimeError("this worker has no file store")
        record = await self._files.save_result(self.job.tenant, self.job.id, data, filename, content_type)
        found = {"id": record.id, "filename": record.filename, "content_type": record.content_type,
                 "size": record.size, "sha256": record.sha256}
        return Result(result if result is not None else {"file_id": record.id, "filename": record.filename},
                      result_file=found)

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def parameters(self) -> dict[str, Any]:
        return self.job.parameters

    @property
    def metadata(self) -> dict[str, Any] | None:
        return self.job.metadata

    async def progress(self, processed: int, total: int, stage: str | None = None) -> None:
        data: dict[str, Any] = {"processed": processed, "total": total}
        if stage is not None:
            data["stage"] = stage
        await self._publish("job.progress", data)


Handler = Callable[[JobContext], Awaitable[dict[str, Any] | Result]]


class FileAccess:
    """The worker's way to the file store (``JOBWIRE_STORAGE``), opened on first use."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: BlobStore | None = None

    @property
    def blobs(self) -> BlobStore:
        if self._store is None:
            self._store = open_store(self._settings)
        return self._store

    async def chunks(self, tenant: str, found: dict[str, Any]) -> AsyncIterator[bytes]:
        """The input file's bytes as they are read; JobFailed at the end when they do not match
        the sha256 the log took for them."""
        file_id, expected = found["file_id"], found.get("sha256")
        if expected is None:
            raise JobFailed("no_input", f"the input file {file_id} has not been received", retryable=False)
        blob = await self.blobs.open(content_key(tenant, file_id, expected))
        if blob is None:
            raise JobFailed("input_not_found", f"the input file {file_id} is gone", retryable=False)
        digest = hashlib.sha256()
        async for chunk in blob.chunks:
            digest.update(chunk)
            yield chunk
        if digest.hexdigest() != expected:
            raise JobFailed("input_checksum_mismatch", f"the input file {file_id} does not match its sha256",
                            retryable=True)

    async def save_result(self, tenant: str, job_id: str, data: bytes, filename: str, content_type: str) -> FileRecord:
        spooled = await asyncio.to_thread(spool_bytes, data, spool_dir(self._settings))
        with discarding(spooled):
            return await save(self.blobs, spooled, tenant=tenant, filename=clean_filename(filename, job_id),
                              content_type=content_type, purpose="result", now=datetime.now(UTC),
                              retention_s=self._settings.file_retention_s, job_id=job_id)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()


@dataclass
class _Running:
    task: asyncio.Task[None]
    context: JobContext
    canceled_by_request: bool = False


@dataclass
class Worker:
    settings: Settings
    operation: str
    handler: Handler
    concurrency: int = 4
    #: After a cancel request, how long a handler may run on before its task is cancelled.
    cancel_grace_s: float = 2.0
    shutdown_grace_s: float = 10.0
    group_id: str | None = None
    _jobs: dict[str, Job] = field(default_factory=dict)
    _running: dict[str, _Running] = field(default_factory=dict)
    #: Jobs of ours waiting for their input file, by id: the record of their job.created,
    #: whose offset stays uncommitted until the job ends (a restart finds them again).
    _awaiting: dict[str, LogRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        topics = Topics(self.settings.topic_prefix)
        self._group = GroupConsumer(
            self.settings.kafka, topics.events,
            self.group_id or f"{self.settings.topic_prefix}jobwire-worker.{self.operation}",
        )
        # No linger: a job's next step waits for each write (started, progress, its outcome).
        self._producer = make_producer(self.settings.kafka, linger_ms=0)
        self._publisher = JobEvents(self._producer, topics.events)
        self._offsets = OffsetTracker()
        self._slots = asyncio.Semaphore(self.concurrency)
        self.source = f"/workers/{self.operation}"
        self._files = FileAccess(self.settings)

    async def start(self) -> None:
        # Traces (OTEL_*, JOBWIRE_TRACING) in any process that runs workers, not only `jobwire
        # worker`: the job's trace continues here. Once per process.
        tracing.configure("jobwire-worker")
        await self._producer.start()
        await self._group.start()

    async def stop(self) -> None:
        """Finish running jobs within the grace period, cancel the rest (they will be replayed),
        commit what is done, and close."""
        if self._running:
            await asyncio.wait([r.task for r in self._running.values()], timeout=self.shutdown_grace_s)
        for running in list(self._running.values()):
            running.task.cancel()
        try:
            with contextlib.suppress(Exception):
                await asyncio.shield(self._commit())
            await self._group.stop()
        finally:
            await self._producer.stop()
            await self._files.close()

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def run(self, *, burst: bool = False, stop: asyncio.Event | None = None) -> None:
        """Consume until ``stop`` is set; in burst mode, until the log is drained and no job runs."""
        while stop is None or not stop.is_set():
            batch = await self._group.fetch(timeout_ms=200)
            if batch:
                await self._handle_batch(batch)
            await self._commit()
            if burst and not batch and not self._running:
                return

    async def _handle_batch(self, batch: list[LogRecord]) -> None:
        # Fold the whole batch first, so a job created and canceled in one batch is never run.
        to_start: list[tuple[str, LogRecord]] = []
        for record in batch:
            event = record.event
            partition, offset = record.position.partition, record.position.offset
            if event is None:
                # Counted and logged, not copied: the dispatcher's group quarantines these.
                self._offsets.skip(partition, offset)
                skipped(self._group.topic, record.position, str(record.invalid))
                continue
            created = event.type == "job.created"
            ours = created and event.data["operation"] == self.operation
            if ours:
                self._offsets.start(partition, offset)
            else:
                self._offsets.skip(partition, offset)
            try:
                if ours or (not created and event.subject in self._jobs):
                    self._observe(event)
            except Exception as exc:  # one record must never stop the worker
                self._set_aside(record, exc, started=ours)
                continue
            job = self._jobs.get(event.subject)
            if ours and job is not None and job.awaiting_upload:
                self._awaiting[event.subject] = record  # it starts when its file arrives
            elif ours:
                to_start.append((event.subject, record))
            elif event.type == "job.input_received" and event.subject in self._awaiting:
                if job is not None and not job.awaiting_upload:
                    to_start.append((event.subject, self._awaiting.pop(event.subject)))
        for job_id, record in to_start:
            try:
                await self._launch(job_id, record)
            except Exception as exc:
                self._set_aside(record, exc, started=True)

    def _set_aside(self, record: LogRecord, exc: Exception, *, started: bool) -> None:
        """Skip a record handling failed on: counted, logged, and its offset free to commit."""
        if started:
            self._offsets.finish(record.position.partition, record.position.offset)
        skipped(self._group.topic, record.position, f"handling failed: {type(exc).__name__}: {exc}")

    def _observe(self, event: Event) -> None:
        job = apply(self._jobs.get(event.subject), event).job
        if job is None:
            return
        self._jobs[job.id] = job
        running = self._running.get(job.id)
        if running is None:
            if job.status.terminal:
                waited = self._awaiting.pop(job.id, None)
                if waited is not None:  # expired or canceled before its file came
                    self._offsets.finish(waited.position.partition, waited.position.offset)
                del self._jobs[job.id]  # nothing more to do for it: keep the local state small
            return
        if job.cancel_requested and not running.context.cancel_requested:
            running.context.cancel_requested = True
            log.info("cancel requested job_id=%s event_id=%s", job.id, event.id)
            asyncio.get_running_loop().call_later(self.cancel_grace_s, self._cancel_running, job.id)
        if job.status.terminal:  # canceled, expired or finished by someone else: stop working on it
            if _expired(job):
                log.info("job expired, stopping its handler job_id=%s event_id=%s", job.id, event.id)
            self._cancel_running(job.id)

    def _cancel_running(self, job_id: str) -> None:
        running = self._running.get(job_id)
        if running is not None and not running.task.done():
            running.canceled_by_request = True
            running.task.cancel()

    async def _launch(self, job_id: str, record: LogRecord) -> None:
        job = self._jobs.get(job_id)
        position = record.position
        if job is None or job.status.terminal or job_id in self._running:
            self._offsets.finish(position.partition, position.offset)
            return
        await self._slots.acquire()
        context = JobContext(job, lambda kind, data: self._publish(job_id, job.tenant, kind, data), _files=self._files)
        task = asyncio.create_task(self._run_job(context, record), name=f"job {job_id}")
        self._running[job_id] = _Running(task, context)

    async def _run_job(self, context: JobContext, record: LogRecord) -> None:
        # The job's trace continues here: what the handler publishes carries this span's context
        # (while tracing is off, the record's own, passed on).
        parent = tracing.traceparent_of(record.headers)
        tracing.carry(parent)
        with tracing.span(f"job {context.job.operation}", kind=tracing.CONSUMER, parent=parent,
                          attributes={"jobwire.job.id": context.job.id, "jobwire.tenant": context.job.tenant,
                                      "jobwire.operation": context.job.operation}):
            await self._run_job_traced(context, record)

    async def _run_job_traced(self, context: JobContext, record: LogRecord) -> None:
        job = context.job
        partition, offset = record.position.partition, record.position.offset
        finished = False
        try:
            if job.cancel_requested:
                await context._publish("job.canceled", {"reason": job.cancel_reason})
            else:
                if job.status is Status.PENDING:
                    await context._publish("job.started", {"stage": None})
                beating = self._heartbeats(context)
                try:
                    outcome = await self._call_handler(context)
                finally:
                    if beating is not None:
                        beating.cancel()
                await self._publish_outcome(context, outcome)
            finished = True
        except JobExpired as exc:  # the handler finished after the deadline: its outcome is void
            log.warning("outcome not published job_id=%s reason=%s", job.id, exc)
            finished = True
        except asyncio.CancelledError:
            running = self._running.get(job.id)
            if running is not None and running.canceled_by_request:
                current = self._jobs.get(job.id)
                if current is not None and not current.status.terminal:
                    await asyncio.shield(context._publish("job.canceled", {"reason": current.cancel_reason}))
                finished = True
            else:
                raise  # shutdown: leave the offset uncommitted so the job is replayed
        except LogError as exc:
            log.error("could not publish the outcome job_id=%s error=%s; it will be replayed", job.id, exc)
        except Exception:  # a bug here must not hold the partition's commits for ever
            log.exception("running the job failed job_id=%s; its record is skipped", job.id)
            finished = True
        finally:
            self._running.pop(job.id, None)
            self._slots.release()
            if finished:
                self._offsets.finish(partition, offset)

    async def _publish_outcome(self, context: JobContext, outcome: tuple[str, dict[str, Any]]) -> None:
        """Publish what the handler returned; a result the log refuses (not JSON, too big or
        deep, an impossible expiry time) fails the job instead of leaving it running."""
        try:
            await context._publish(*outcome)
        except InvalidEvent as exc:
            log.warning("handler result refused job_id=%s reason=%s", context.id, str(exc)[:200])
            await context._publish("job.failed", {"error": {
                "code": "invalid_result", "message": f"the handler's result was refused: {exc}"[:4000], "details": {},
            }, "retryable": False})

    async def _call_handler(self, context: JobContext) -> tuple[str, dict[str, Any]]:
        job = context.job
        try:
            value = await self.handler(context)
        except JobFailed as failure:
            log.info("job failed job_id=%s code=%s", job.id, failure.code)
            return "job.failed", {"error": {"code": failure.code, "message": failure.message,
                                            "details": failure.details}, "retryable": failure.retryable}
        except Exception as exc:  # a handler bug fails the job, never the worker
            log.exception("handler raised job_id=%s", job.id)
            return "job.failed", {"error": {"code": "handler_error", "message": f"{type(exc).__name__}: {exc}"[:4000],
                                            "details": {}}, "retryable": True}
        if isinstance(value, Result):
            data: dict[str, Any] = {"result": value.result}
            for name in ("result_url", "result_url_expires_at", "result_checksum", "result_file"):
                if getattr(value, name) is not None:
                    data[name] = getattr(value, name)
            return "job.completed", data
        return "job.completed", {"result": value if isinstance(value, dict) else {"value": value}}

    def _heartbeats(self, context: JobContext) -> asyncio.Task[None] | None:
        """While the handler runs: a ``job.heartbeat`` every third of the job's heartbeat limit."""
        limit = context.job.heartbeat_timeout_s
        if limit is None:
            return None
        return asyncio.create_task(self._beat(context, limit / 3), name=f"heartbeat {context.id}")

    async def _beat(self, context: JobContext, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await context._publish(HEARTBEAT, {})
            except JobExpired:
                return
            except (LogError, InvalidEvent) as exc:  # a missed beat is no reason to stop the job
                log.warning("heartbeat not published job_id=%s error=%s", context.id, exc)

    async def _publish(self, job_id: str, tenant: str, kind: str, data: dict[str, Any]) -> None:
        current = self._jobs.get(job_id)
        if current is not None and _expired(current):
            raise JobExpired(current)
        event = new_event(kind, job_id, tenant, {k: v for k, v in data.items() if v is not None}, source=self.source)
        for attempt in range(5):
            try:
                position = await self._publisher.publish(event)
                log.info("event published job_id=%s event_id=%s type=%s position=%s", job_id, event.id, kind, position)
                return
            except LogError as exc:
                if not exc.retriable or attempt == 4:
                    raise
                await asyncio.sleep(0.2 * 2**attempt)

    async def _commit(self) -> None:
        moved = self._offsets.to_commit()
        if moved:
            self._offsets.committed(await self._group.commit(moved))


def _expired(job: Job) -> bool:
    return job.status is Status.FAILED and (job.error or {}).get("code") in (TIMEOUT, EXPIRED)
