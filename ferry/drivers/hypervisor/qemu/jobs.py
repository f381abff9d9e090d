"""QEMU block jobs: mirror jobs `ferry-<job id>` and the block-stream of a layer merge.

Owns: job ids, reading a job's status (query-jobs, query-block-jobs), waiting on job events,
the blockdev-mirror arguments, a block-stream run to its end, and checking a pivot landed.
Does not own policy (when to switch to write-blocking or to pivot: the migration service) nor
the run-dir notes' layout (rundir.py).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ferry.domain.errors import BadRequest, DriverError, NotFound
from ferry.domain.model import DiskChain
from ferry.drivers.hypervisor.base import JobStatus, MirrorStatus
from ferry.drivers.hypervisor.qemu.devices import plugged_disk
from ferry.drivers.hypervisor.qemu.nodes import format_node
from ferry.drivers.hypervisor.qemu.rundir import RunDir
from ferry.drivers.hypervisor.qmp import Json, QmpCommandError, QmpConnection, Subscription, job_events

T = TypeVar("T")

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
FINISHED = (JobStatus.CONCLUDED, JobStatus.NULL)


def qemu_job_id(job_id: str) -> str:
    if not JOB_ID.fullmatch(job_id):
        raise BadRequest(f"Invalid job id {job_id!r}.")
    return f"ferry-{job_id}"


def job_status(job: Json) -> JobStatus:
    try:
        return JobStatus(str(job.get("status")))
    except ValueError as exc:
        name = job.get("id", job.get("device"))
        raise DriverError(f"job {name} has an unknown status {job.get('status')!r}") from exc


async def find_job(conn: QmpConnection, qid: str) -> Json | None:
    for job in await conn.query("query-jobs"):
        if job.get("id") == qid:
            return job
    return None


async def wait_until(
    sub: Subscription,
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout: float,
    what: str,
    tick: float | None,
) -> T:
    """Re-run `probe` after every event of `sub` (and every `tick` s if given) until `done`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if done(value):
            return value
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise DriverError(f"timed out after {timeout:g} s waiting for {what}")
        await sub.wait(remaining if tick is None else min(remaining, tick))


async def wait_job(conn: QmpConnection, sub: Subscription, qid: str, timeout: float) -> Json:
    """Wait (on job events) until job `qid` has concluded; returns its query-jobs entry."""

    async def probe() -> Json:
        job = await find_job(conn, qid)
        if job is None:
            raise DriverError(f"job {qid} vanished (dismissed by someone else?)")
        return job

    return await wait_until(sub, probe, lambda j: job_status(j) in FINISHED, timeout, f"job {qid}", None)


async def job_command(conn: QmpConnection, job_id: str, command: str, args: Json) -> None:
    """A command on mirror job `job_id`; a job QEMU does not know is NotFound."""
    try:
        await conn.execute(command, args)
    except QmpCommandError as exc:
        if exc.error_class == "DeviceNotFound" or "not found" in exc.desc.lower():
            raise NotFound(f"no mirror job {job_id}") from exc
        raise


async def mirror_status(conn: QmpConnection, run: RunDir, job_id: str) -> MirrorStatus | None:
    # One query, so status, progress and readiness come from the same instant (query-jobs
    # and query-block-jobs issued back to back can straddle the job becoming ready).
    qid = qemu_job_id(job_id)
    job = next((b for b in await conn.query("query-block-jobs") if b.get("device") == qid), None)
    if job is None:
        return None
    status = job_status(job)
    note = run.read_note("mirror", job_id) or {}
    return MirrorStatus(
        job_id=job_id,
        status=status,
        offset=int(job.get("offset", 0)),
        length=int(job.get("len", 0)),
        ready=bool(job.get("ready", status is JobStatus.READY)),
        actively_synced=bool(job.get("actively-synced", False)),
        write_blocking=bool(note.get("write_blocking", False)),
        error=job.get("error"),
    )


def mirror_args(qid: str, source: str, target: DiskChain, sync_top: bool, speed: int) -> Json:
    return {
        "job-id": qid,
        "device": source,
        "target": format_node(target.active.path),
        "sync": "top" if sync_top else "full",
        "speed": speed,
        "auto-finalize": True,
        "auto-dismiss": False,
        "copy-mode": "background",
    }


async def confirm_on_target(conn: QmpConnection, note: Json) -> None:
    """After a pivot the device must run on the mirror note's target."""
    disk = await plugged_disk(conn, str(note["volume_id"]))
    want = str(note["target"][-1])
    if disk.files[0] != want:
        raise DriverError(f"after the pivot disk-{note['volume_id']} runs on {disk.files[0]}, not on {want}")


async def stream_out(conn: QmpConnection, files: tuple[str, ...], index: int, timeout: float) -> None:
    """block-stream layer `files[index]` into the layer above it; that layer's backing becomes
    the merged layer's backing (QEMU writes `backing-file`, kept relative, into its header)."""
    if index == 0:
        raise BadRequest(f"{files[0]} is the active layer; only a snapshot layer can be merged")
    child = files[index - 1]
    qid = "merge-" + format_node(child)
    args: Json = {"job-id": qid, "device": format_node(child), "auto-dismiss": False}
    if index + 1 < len(files):
        parent = files[index + 1]
        args["base-node"] = format_node(parent)
        args["backing-file"] = os.path.relpath(parent, os.path.dirname(child))
    with conn.subscribe(job_events(qid)) as sub:
        if await find_job(conn, qid) is None:
            await conn.execute("block-stream", args)
        job = await wait_job(conn, sub, qid, timeout)
    await conn.execute("job-dismiss", {"id": qid})
    if job.get("error"):
        raise DriverError(f"merging {files[index]} into {child} failed: {job['error']}")
