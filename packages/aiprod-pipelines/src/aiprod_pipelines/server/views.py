"""A stored job as the API shows it (``GET /v1/videos/{id}``, lists, webhooks)."""

from __future__ import annotations

from datetime import UTC, datetime

from aiprod_pipelines.server.schemas import ImageView, JobRequest, JobView
from aiprod_pipelines.server.store import Job


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a ``Z``: ``2025-01-31T12:00:00.123Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def content_url(job: Job) -> str | None:
    """Where the job's video downloads from; None until it succeeded or once it was removed."""
    if job.status != "succeeded" or job.video_key is None or job.video_removed:
        return None
    return f"/v1/videos/{job.id}/content"


def job_view(job: Job) -> JobView:
    """The API's view of ``job``: state, progress, times, the request as run, the video's URL."""
    images = [ImageView(frame=image["frame"], size=image["size"]) for image in job.images]
    return JobView(
        id=job.id,
        status=job.status,
        progress=job.progress,
        error=job.error,
        created_at=iso(job.created_at) or "",
        started_at=iso(job.started_at),
        finished_at=iso(job.finished_at),
        expires_at=iso(job.expires_at),
        queue_position=job.queue_position,
        request=JobRequest.model_validate({**job.request, "images": images}),
        content_url=content_url(job),
    )
