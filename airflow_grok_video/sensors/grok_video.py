"""The sensor that waits for a Grok video task and hands its URL on."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn, cast

import airflow
from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)
from airflow.sdk.definitions.mappedoperator import MappedOperator, OperatorPartial
from airflow.triggers.base import StartTriggerArgs
from packaging.version import Version

from airflow_grok_video import metrics
from airflow_grok_video.exceptions import GrokVideoAPIError, GrokVideoGenerationFailed
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.links.grok_video import GrokVideoLink, success_xcoms
from airflow_grok_video.outcome import push_failure, push_success
from airflow_grok_video.polling import (
    DEFAULT_MAX_POLL_INTERVAL,
    DEFERRAL_GRACE,
    Look,
    PollSchedule,
    VideoWait,
)
from airflow_grok_video.video_task import url_for_logs

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator, Context, XComArg


class GrokVideoSensor(BaseSensorOperator):
    """
    Wait until a Grok video task has a ``result.video_url``, and return that URL.

    The URL is the XCom ``return_value`` and is also pushed under the key ``video_url``. However the
    wait ends on the video (done or failed), the record of how is pushed under ``video_outcome``
    (:mod:`airflow_grok_video.outcome`), a failure's before the task fails.

    Works in ``poke``, ``reschedule`` and deferrable mode; deferred, the wait runs in the
    triggerer (:class:`~airflow_grok_video.triggers.grok_video.GrokVideoTrigger`) and holds no
    worker slot, and a success ends the task there. On Airflow 3.3+ a deferrable sensor on the
    output of a task that is not mapped (or in the same mapped task group as that task, or
    mapped over a mapped task's output) also starts there, without a worker (unless
    ``start_in_triggerer=False``); otherwise it starts in a worker, looks
    once (a video already done is handed on at once) and defers, handing that answer to the
    trigger as its first query's (no query is spent twice). While waiting it logs the status
    and progress (``processing 45%``). A ``failed`` task, or one whose undocumented status says it
    ended (``cancelled``, ``expired``, ...), fails the sensor without retries, with the API's
    ``error_message``. ``timeout`` bounds the wait in every mode; with
    ``soft_fail=True`` a timeout or failure skips the task instead.

    :param video_task_id: the API's video task id (templated), usually
        ``"{{ ti.xcom_pull(task_ids='create') }}"`` or the create operator's ``.output``.
    :param grok_conn_id: the Airflow connection id.
    :param poke_interval: seconds between two queries; deferred, the shortest wait between two queries.
    :param timeout: seconds after which the sensor gives up (fails, or skips with ``soft_fail``).
    :param deferrable: wait in the triggerer; defaults to ``[operators] default_deferrable``.
    :param max_poll_interval: deferred, the longest wait between two queries: in between, queries
        follow the video's progress (see "Waiting, polling and timeouts" in the docs). ``None``, or
        a value not above ``poke_interval``, polls every ``poke_interval`` seconds.
    :param start_in_triggerer: deferred, start the wait in the triggerer where Airflow can (3.3+, a
        ``video_task_id`` from a task that is not mapped, or a mapped sensor over a mapped task's
        output: see :meth:`partial`); ``False`` always starts in a worker.
    """

    template_fields: Sequence[str] = ("video_task_id",)
    operator_extra_links = (GrokVideoLink(),)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        video_task_id: str | XComArg,
        grok_conn_id: str = GrokVideoHook.default_conn_name,
        poke_interval: float = 15.0,
        timeout: float = 60 * 60,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_poll_interval: float | None = DEFAULT_MAX_POLL_INTERVAL,
        start_in_triggerer: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        PollSchedule(poke_interval, max_poll_interval)  # refuses bad intervals now, not in the triggerer
        self.video_task_id = cast("str", video_task_id)  # an XComArg is resolved before execute
        self.grok_conn_id = grok_conn_id
        self.deferrable = deferrable
        self.max_poll_interval = max_poll_interval
        self._wait: VideoWait | None = None
        self.start_in_triggerer = start_in_triggerer
        if deferrable and start_in_triggerer:
            self._start_in_the_triggerer(video_task_id)

    def _start_in_the_triggerer(self, video_task_id: str | XComArg) -> None:
        """
        Have the scheduler start the wait in the triggerer, without a worker, where it can (Airflow 3.3+).

        The triggerer renders the video task id itself; it can read one XCom only by its map
        index, so the id must be the output of a task that is not mapped (each instance of a
        sensor in the same mapped task group as that task reads the instance of its own map
        index), or a template that names ``map_indexes``. Otherwise the sensor starts in a worker
        and defers from there.

        :param video_task_id: the ``video_task_id`` argument, before templating.
        """
        if not _TRIGGERER_RENDERS_TEMPLATES:
            return
        template = _template_the_triggerer_renders(video_task_id, self, mapped=False)
        if template is None:
            return
        self.start_trigger_args = _start_trigger_args(
            type(self), template, self.grok_conn_id, self.poke_interval, self.timeout, self.max_poll_interval
        )
        self.start_from_trigger = True

    @classmethod
    def partial(cls, **kwargs: Any) -> OperatorPartial:  # type: ignore[override]
        """
        Map the sensor (``.partial(...).expand(video_task_id=...)``), starting in the triggerer where it can.

        Airflow gives every map index of a mapped task the same start arguments, so a mapped sensor
        starts in the triggerer when only ``video_task_id`` is mapped, over a mapped task's
        ``.output`` (each index reads the XCom of the same index), neither is in a mapped task
        group, and nothing it waits by comes from ``default_args``; otherwise it starts in a worker.

        :param kwargs: the arguments every map index shares.
        """
        partial = super().partial(**kwargs)
        partial._expand_called = True  # replaced by the one below, which is expanded
        return _SensorPartial(
            operator_class=partial.operator_class, kwargs=partial.kwargs, params=partial.params
        )

    @cached_property
    def hook(self) -> GrokVideoHook:
        """The hook this sensor queries through."""
        return GrokVideoHook(self.grok_conn_id)

    def execute(self, context: Context) -> Any:
        """Wait in the worker (poke or reschedule mode) or defer to the triggerer."""
        if not self.deferrable:
            self._wait = self._video_wait(deadline=self._started(context) + self.timeout)
            return super().execute(context)
        finished, look = self._first_look(context)
        if finished is not None:
            return finished
        from airflow_grok_video.triggers.grok_video import defer_until_done

        seen = "" if look is None else f" ({look.task.describe()})"
        self.log.info(
            "Deferring: waiting for Grok video task %s%s in the triggerer", self.video_task_id, seen
        )
        defer_until_done(
            self,
            video_task_id=self.video_task_id,
            grok_conn_id=self.grok_conn_id,
            poll_interval=self.poke_interval,
            max_poll_interval=self.max_poll_interval,
            timeout=self.timeout,
            return_value="video_url",
            first_answer=look,
        )

    def _first_look(self, context: Context) -> tuple[str | None, Look | None]:
        """
        Look once before deferring: the wait's first query, whose answer the trigger goes on from.

        The answer is read by :meth:`VideoWait.step`, as every query of the wait is: a video done
        is handed on (its URL returned); a ``failed`` one fails the task now, as does a wait whose
        ``timeout`` has passed, and an answer that will not change (a refused key, an unknown video
        task, the API's refusal), as the deferred wait would after its first query (skipped with
        ``soft_fail``). A wait that goes on returns the answer as a :class:`Look`, handed to the
        trigger so that it does not query early again; a transient error returns neither, and the
        trigger starts from nothing.

        :param context: the task's context.
        :return: the video URL of a video already done, or the look to defer with.
        """
        wait = self._video_wait(deadline=self._started(context) + self.timeout)  # from before the look
        try:
            task = self.hook.get_video_task(self.video_task_id, deadline=time.time())  # no retries
        except GrokVideoAPIError as error:
            if not error.transient:
                self._fail_now(error)
            self.log.info("Grok video task %s: first look failed (%s); deferring", self.video_task_id, error)
            return None, None
        read_at = time.time()
        step = wait.step(task, read_at)
        if step.status == "failed":
            failure = GrokVideoGenerationFailed(self.video_task_id, step.task.error_message)
            push_failure(context, failure)
            metrics.count("failed", dag_id=self.dag_id, task_id=self.task_id)
            self._fail_now(failure)
        if step.status == "timeout":
            self._fail_now(AirflowSensorTimeout(step.message))
        if step.status != "success":
            return None, Look(task, read_at)
        video_url = cast("str", step.task.video_url)  # a success has its URL
        self.log.info(
            "Grok video task %s: already completed, %s", self.video_task_id, url_for_logs(video_url)
        )
        push_success(context, self.video_task_id, video_url, url_expires_at=step.task.url_expires_at())
        return video_url, None

    def _fail_now(self, error: Exception) -> NoReturn:
        """Raise ``error``, or skip the task with ``soft_fail``, as a resumed wait would."""
        if self.soft_fail:
            raise AirflowSkipException(f"Skipping due to soft_fail: {error}") from error
        raise error

    def _started(self, context: Context) -> float:
        """Unix time the wait began: this try's start, or in reschedule mode its first poke's."""
        first = context["ti"].get_first_reschedule_date(context) if self.reschedule else None
        return first.timestamp() if first else time.time()

    def _video_wait(self, deadline: float) -> VideoWait:
        # Airflow times the pokes, at a fixed interval.
        return VideoWait(self.video_task_id, PollSchedule(self.poke_interval), deadline)

    def poke(self, context: Context) -> PokeReturnValue:
        """Query the task once; done when it has a video URL, failed when the API says so."""
        wait = self._wait or self._video_wait(deadline=math.inf)
        task = self.hook.get_video_task(self.video_task_id, deadline=wait.deadline)
        step = wait.step(task, time.time())
        if step.status == "failed":
            failure = GrokVideoGenerationFailed(self.video_task_id, step.task.error_message)
            push_failure(context, failure)
            metrics.count("failed", dag_id=self.dag_id, task_id=self.task_id)
            raise failure
        self.log.info("%s", step.message)  # on "timeout", Airflow's own timeout follows
        if step.status == "success":
            video_url = cast("str", step.task.video_url)  # a success has its URL
            push_success(context, self.video_task_id, video_url, url_expires_at=step.task.url_expires_at())
        return PokeReturnValue(is_done=step.status == "success", xcom_value=step.task.video_url)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """
        Finish after the trigger's event: return the video URL, or raise what went wrong.

        :param context: the task's context.
        :param event: the trigger's event.
        """
        from airflow_grok_video.triggers.grok_video import video_url_from_event

        try:
            video_url = video_url_from_event(event, timeout_error=AirflowSensorTimeout)
        except GrokVideoGenerationFailed as failure:
            push_failure(context, failure)
            metrics.count("failed", dag_id=self.dag_id, task_id=self.task_id)
            raise
        self.log.info("Grok video task %s: completed, %s", self.video_task_id, url_for_logs(video_url))
        video_task_id = str(event.get("video_task_id") or self.video_task_id)
        push_success(context, video_task_id, video_url, url_expires_at=event.get("url_expires_at"))
        return video_url


# Airflow 3.3 renders a task's templated trigger arguments in the triggerer (seen working on 3.3.2).
_TRIGGERER_RENDERS_TEMPLATES = Version(airflow.__version__).release >= (3, 3)


def _template_the_triggerer_renders(video_task_id: Any, sensor: Any, *, mapped: bool) -> str | None:
    """
    ``video_task_id`` as a template the triggerer can render, or ``None`` when it cannot.

    :param video_task_id: the sensor's argument: a template string, or a task's ``.output``.
    :param sensor: the sensor (a mapped one when ``mapped``), placed in its DAG and task group.
    :param mapped: whether the sensor is mapped over ``video_task_id``: it then reads the XCom of
        its own map index from a mapped upstream task.
    """
    if isinstance(video_task_id, str):
        return video_task_id if "map_indexes" in video_task_id and not mapped else None
    upstream = getattr(video_task_id, "operator", None)
    key = getattr(video_task_id, "key", None)
    if type(video_task_id).__name__ != "PlainXComArg" or upstream is None:
        return None
    index = _map_index_to_pull(upstream, sensor, mapped=mapped)
    if index is None:
        return None
    return f"{{{{ ti.xcom_pull(task_ids={upstream.task_id!r}, key={key!r}, map_indexes={index}) }}}}"


def _map_index_to_pull(upstream: Any, sensor: Any, *, mapped: bool) -> str | None:
    """
    Which map index of ``upstream``'s XCom each instance of the sensor reads, as a template expression.

    ``-1`` for a task that is not expanded; ``ti.map_index`` where each instance of the sensor
    reads the instance of ``upstream`` with its own map index: a sensor mapped over a mapped
    task's output, or a sensor in the same mapped task group as ``upstream`` (both expanded by
    the same groups, so their indexes agree, as Airflow resolves the ``.output`` in a worker).
    ``None`` where one index cannot say it (Airflow hands the sensor several values, or works the
    index out from the task counts): the sensor then starts in a worker.

    :param upstream: the task whose output the sensor waits by.
    :param sensor: the sensor (a mapped one when ``mapped``).
    :param mapped: whether the sensor is mapped over ``upstream``'s output.
    """
    upstream_group = _closest_mapped_group(upstream)
    sensor_group = _closest_mapped_group(sensor)
    if mapped:
        outside_groups = upstream_group is None and sensor_group is None
        return "ti.map_index" if upstream.is_mapped and outside_groups else None
    if upstream.is_mapped:
        return None  # the sensor would get every index's value
    if upstream_group is None:
        return "-1"
    return "ti.map_index" if upstream_group == sensor_group else None


def _closest_mapped_group(task: Any) -> str | None:
    """
    The id of the innermost mapped task group ``task`` is in, or ``None``.

    :param task: an operator or a mapped operator, in its DAG.
    """
    group = task.get_closest_mapped_task_group()
    return None if group is None else str(group.group_id)


def _start_trigger_args(
    sensor: type[BaseOperator],
    template: str,
    grok_conn_id: str,
    poll_interval: float,
    timeout: float,
    max_poll_interval: float | None,
) -> StartTriggerArgs:
    """The trigger a deferrable sensor starts in the triggerer with (its wait's end set by ``timeout``)."""
    return StartTriggerArgs(
        trigger_cls="airflow_grok_video.triggers.grok_video.GrokVideoTrigger",
        trigger_kwargs={
            "video_task_id": template,
            "grok_conn_id": grok_conn_id,
            "poll_interval": poll_interval,
            "end_time": None,  # from the trigger timeout below
            "max_poll_interval": max_poll_interval,
            "success_xcoms": success_xcoms(sensor, "video_url"),
        },
        next_method="execute_complete",
        timeout=timedelta(seconds=timeout) + DEFERRAL_GRACE,
    )


#: The sensor's arguments its start arguments are built from.
_WAIT_ARGUMENTS = (
    "grok_conn_id",
    "poke_interval",
    "timeout",
    "deferrable",
    "max_poll_interval",
    "start_in_triggerer",
)


class _SensorPartial(OperatorPartial):
    """A mapped :class:`GrokVideoSensor` in the making: its expansion may start in the triggerer."""

    def expand(self, **mapped_kwargs: Any) -> MappedOperator:
        """Expand as Airflow does, then give the mapped sensor its start arguments where it can."""
        mapped = super().expand(**mapped_kwargs)
        args = self._start_arguments(mapped, mapped_kwargs)
        if args is not None:
            mapped.start_trigger_args = args
            mapped.start_from_trigger = True
        return mapped

    def _start_arguments(
        self, mapped: MappedOperator, mapped_kwargs: dict[str, Any]
    ) -> StartTriggerArgs | None:
        if not _TRIGGERER_RENDERS_TEMPLATES or set(mapped_kwargs) != {"video_task_id"}:
            return None
        template = _template_the_triggerer_renders(mapped_kwargs["video_task_id"], mapped, mapped=True)
        defaults = {**(mapped.dag.default_args if mapped.dag else {})}
        if mapped.task_group is not None:
            defaults.update(getattr(mapped.task_group, "default_args", None) or {})
        if template is None or any(name in defaults for name in _WAIT_ARGUMENTS):
            return None
        given = mapped.partial_kwargs
        signature = inspect.signature(GrokVideoSensor.__init__).parameters
        value = {name: given.get(name, signature[name].default) for name in _WAIT_ARGUMENTS}
        if not (value["deferrable"] and value["start_in_triggerer"]):
            return None
        timeout = value["timeout"]
        return _start_trigger_args(
            self.operator_class,  # a subclass's own extra links
            template,
            value["grok_conn_id"],
            float(value["poke_interval"]),
            timeout.total_seconds() if isinstance(timeout, timedelta) else float(timeout),
            value["max_poll_interval"],
        )
