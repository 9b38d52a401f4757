"""How an emulated video's status and progress follow the clock: a family of progress models.

The API documents ``progress`` as 1-99 "updated live" while ``processing``, and nothing more: how long
a task stays queued, whether progress counts from the create or from the processing start, and
whether it grows evenly are all undocumented. A :class:`ProgressModel` picks one answer to each:

- ``queue``: how long the task stays ``queued``. ``None`` (the default) is the emulator's
  ``queue_seconds``, before ``generation_seconds`` of processing; a share (0 to 0.3) makes
  ``generation_seconds`` the whole time from the create to the end, queued for its first share.
- ``origin``: progress counts from the processing start (``processing``, the default) or from the
  create (``created``: the first ``processing`` answer already shows the queued share).
- ``shape``: ``linear`` (the default), eased (``ease-in``: slow start; ``ease-out``: slow finish;
  ``smoothstep``: both), ``steps`` (10 % at a time; 1 % in the first tenth), or ``none`` (progress
  stays 0 until the task is done).

The default, ``ProgressModel()``, is the emulator's original behaviour. Models are written as specs,
``"shape=ease-out,queue=0.2,origin=created"`` (``"default"`` for the default), on the command line
(``--progress-model``), in ``/_emulator/config`` and in a ``Rule``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args

Origin = Literal["processing", "created"]
Shape = Literal["linear", "ease-in", "ease-out", "smoothstep", "steps", "none"]
Phase = Literal["queued", "processing", "done"]
ORIGINS: tuple[str, ...] = get_args(Origin)
SHAPES: tuple[str, ...] = get_args(Shape)
#: The largest queue share a model accepts.
MAX_QUEUE_SHARE = 0.3


@dataclass(frozen=True)
class ProgressModel:
    """
    How a task's status and progress follow the clock, from its create to its end.

    :param queue: the share of the total time spent ``queued`` (0 to 0.3), ``generation_seconds``
        then being the whole time; ``None`` queues for the emulator's ``queue_seconds`` first.
    :param origin: progress counts from the ``processing`` start or from the create (``created``).
    :param shape: ``linear``, ``ease-in``, ``ease-out``, ``smoothstep``, ``steps`` (10 % at a time)
        or ``none`` (0 until done).
    """

    queue: float | None = None
    origin: Origin = "processing"
    shape: Shape = "linear"

    def __post_init__(self) -> None:
        if self.queue is not None and (
            isinstance(self.queue, bool)
            or not isinstance(self.queue, int | float)
            or not 0 <= self.queue <= MAX_QUEUE_SHARE
        ):
            raise ValueError(f"queue: must be a share between 0 and {MAX_QUEUE_SHARE} (or None)")
        if self.origin not in ORIGINS:
            raise ValueError(f"origin: must be one of {', '.join(ORIGINS)}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape: must be one of {', '.join(SHAPES)}")

    @classmethod
    def parse(cls, spec: ProgressModel | str | dict[str, Any]) -> ProgressModel:
        """
        A model from its spec: ``"default"``, ``"shape=steps,queue=0.2,origin=created"`` or a dict.

        :param spec: the spec (a model is returned as it is).
        """
        if isinstance(spec, ProgressModel):
            return spec
        if isinstance(spec, dict):
            return cls(**spec)
        if not isinstance(spec, str):
            raise ValueError("progress model: must be a spec such as 'shape=linear,queue=0.2'")
        fields: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            if part == "default":
                continue
            key, sep, value = part.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or key not in ("queue", "origin", "shape"):
                raise ValueError(f"progress model: unknown part {part!r} (expected queue=, origin=, shape=)")
            if key == "queue":
                try:
                    fields[key] = None if value in ("", "none", "null") else float(value.rstrip("%"))
                except ValueError:
                    raise ValueError(f"queue: must be a share between 0 and {MAX_QUEUE_SHARE}") from None
                if value.endswith("%") and fields[key] is not None:
                    fields[key] /= 100
            else:
                fields[key] = value
        return cls(**fields)

    def __str__(self) -> str:
        parts = [f"shape={self.shape}"]
        if self.queue is not None:
            parts.append(f"queue={self.queue:g}")
        if self.origin != "processing":
            parts.append(f"origin={self.origin}")
        return "default" if self == ProgressModel() else ",".join(parts)

    def timeline(self, queue_seconds: float, generation_seconds: float) -> tuple[float, float]:
        """
        Seconds from the create to the processing start, and to the end.

        :param queue_seconds: the emulator's queue time (used when ``queue`` is ``None``).
        :param generation_seconds: the task's generation time.
        """
        if self.queue is None:
            return queue_seconds, queue_seconds + generation_seconds
        return self.queue * generation_seconds, generation_seconds

    def state(
        self, created: float, queue_seconds: float, generation_seconds: float, now: float
    ) -> tuple[Phase, int]:
        """
        The phase and the progress a query at ``now`` reports (pure: the clock is an argument).

        :param created: Unix time of the create.
        :param queue_seconds: the emulator's queue time (used when ``queue`` is ``None``).
        :param generation_seconds: the task's generation time.
        :param now: the time of the query.
        """
        start, end = self.timeline(queue_seconds, generation_seconds)
        elapsed = now - created
        if elapsed >= end:
            return "done", 100
        if elapsed < start:
            return "queued", 0
        if self.shape == "none":
            return "processing", 0
        origin = 0.0 if self.origin == "created" else start
        fraction = (elapsed - origin) / max(end - origin, 1e-9)
        return "processing", min(99, max(1, _percent(self.shape, min(1.0, max(0.0, fraction)))))


def _percent(shape: Shape, fraction: float) -> int:
    """The whole percent shown for ``fraction`` of the work done, rounded down."""
    if shape == "linear":
        return int(fraction * 100)  # exactly as the emulator always computed it
    if shape == "steps":
        return int(fraction * 10) * 10
    if shape == "ease-in":
        shown = fraction * fraction
    elif shape == "ease-out":
        shown = 1 - (1 - fraction) ** 2
    else:
        shown = fraction * fraction * (3 - 2 * fraction)  # smoothstep
    return int(shown * 100 + 1e-9)  # 1 - 0.81 is 0.18999...: 19 %
