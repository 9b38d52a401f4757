"""The emulated video tasks: the rules that shape them, and their status computed from the clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from airflow_grok_video.emulator.progress import ProgressModel
from airflow_grok_video.emulator.wire import VIDEO_PREFIX

Outcome = Literal["completed", "failed"]
OUTCOMES: tuple[str, ...] = get_args(Outcome)


@dataclass(frozen=True)
class Rule:
    """
    Per-task behaviour, chosen by the create request's prompt (the first matching rule wins).

    :param prompt_contains: the rule applies when the prompt contains this text.
    :param outcome: how the task ends: ``completed`` or ``failed``.
    :param error_message: the ``error_message`` of a failed task.
    :param generation_seconds: this task's generation time, instead of the emulator's.
    :param status_spelling: the status reported once done (``completed``, or the FAQ's ``success``).
    :param times: how many creates it applies to (every one when ``None``).
    :param processing_status: the status reported while generating (e.g. an undocumented ``rendering``).
    :param url_query: a query string appended to ``result.video_url`` (e.g. a signature), ignored
        when the video is downloaded.
    :param progress_model: how this task's status and progress follow the clock, instead of the
        emulator's: a :class:`~airflow_grok_video.emulator.progress.ProgressModel` or its spec
        (``"shape=steps,queue=0.2"``, or a dict of its fields).
    """

    prompt_contains: str
    outcome: Outcome = "completed"
    error_message: str = "generation failed"
    generation_seconds: float | None = None
    status_spelling: str = "completed"
    times: int | None = None
    processing_status: str = "processing"
    url_query: str = ""
    progress_model: ProgressModel | None = None

    def __post_init__(self) -> None:
        if self.progress_model is not None:  # a spec, as /_emulator/rules sends it
            object.__setattr__(self, "progress_model", ProgressModel.parse(self.progress_model))
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome: must be one of {', '.join(OUTCOMES)}")
        if self.times is not None and self.times < 1:
            raise ValueError("times: must be at least 1 (or None for every create)")


@dataclass
class EmulatedVideo:
    """
    One accepted create, as the emulator keeps it: its status is computed from the clock whenever asked.

    Not the client's ``VideoTask``, which holds one query answer as the hook reads it: this is the
    emulator's side, the task such answers are made from.

    :param task_id: the id returned by the create.
    :param model: the normalized model name.
    :param prompt: the prompt.
    :param image_url: the reference image.
    :param duration: 10 or 15 seconds.
    :param ratio: the aspect ratio (orientation already mapped).
    :param created: Unix time of acceptance.
    :param queue_seconds: how long it stays ``queued``.
    :param generation_seconds: how long it stays ``processing``.
    :param rule: the rule that chose its behaviour, if any.
    :param progress_model: how its status and progress follow the clock (the default: queued for
        ``queue_seconds``, then linear progress from the processing start).
    """

    task_id: str
    model: str
    prompt: str
    image_url: str
    duration: int
    ratio: str
    created: float
    queue_seconds: float
    generation_seconds: float
    rule: Rule | None = None
    progress_model: ProgressModel = field(default_factory=ProgressModel)

    @property
    def done_at(self) -> float:
        """Unix time at which the task completes or fails."""
        return self.created + self.progress_model.timeline(self.queue_seconds, self.generation_seconds)[1]

    @property
    def fails(self) -> bool:
        """Whether the task ends ``failed``."""
        return self.rule is not None and self.rule.outcome == "failed"

    def ready(self, now: float) -> bool:
        """
        Whether the video can be downloaded.

        :param now: the current Unix time.
        """
        return now >= self.done_at and not self.fails

    def status(self, now: float) -> str:
        """
        The status a query would report.

        :param now: the current Unix time.
        """
        return str(self.view("", now)["status"])

    def view(self, base_url: str, now: float) -> dict[str, Any]:
        """
        The query answer's ``data``.

        :param base_url: the emulator's base URL, for ``result.video_url``.
        :param now: the current Unix time.
        """
        data: dict[str, Any] = {
            "task_id": self.task_id,
            "status": "queued",
            "progress": 0,
            "model": self.model,
            "created_at": int(self.created),
            "completed_at": None,
            "result": None,
            "error_message": None,
        }
        phase, progress = self.progress_model.state(
            self.created, self.queue_seconds, self.generation_seconds, now
        )
        if phase == "done":
            data.update(self._finished(base_url))
        elif phase == "processing":
            data.update(status=self._spelling("processing_status", "processing"), progress=progress)
        return data

    def _finished(self, base_url: str) -> dict[str, Any]:
        finished: dict[str, Any] = {"completed_at": int(self.done_at)}
        rule = self.rule
        if rule is not None and rule.outcome == "failed":
            return {**finished, "status": "failed", "error_message": rule.error_message}
        video_url = f"{base_url}{VIDEO_PREFIX}{self.task_id}.mp4"
        if rule is not None and rule.url_query:
            video_url += f"?{rule.url_query}"
        result = {"video_url": video_url, "image_url": self.image_url}
        return {
            **finished,
            "status": self._spelling("status_spelling", "completed"),
            "progress": 100,
            "result": result,
        }

    def _spelling(self, field: str, default: str) -> str:
        return default if self.rule is None else str(getattr(self.rule, field))
