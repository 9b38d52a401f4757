"""The operator that creates a Grok 1.5 video task, and optionally waits for it."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, BaseOperator, conf

from airflow_grok_video import metrics
from airflow_grok_video.billing import CreateJournal, JournalChain
from airflow_grok_video.exceptions import (
    GrokVideoGenerationFailed,
    GrokVideoSpendCapError,
    GrokVideoUncertainCreateError,
    GrokVideoValidationError,
)
from airflow_grok_video.hooks.grok_video import GrokVideoHook, Price
from airflow_grok_video.links.grok_video import GrokVideoLink, SuccessValue
from airflow_grok_video.operators._ledger import CreateLedger, CreateRecord, LedgerJournal, fingerprint
from airflow_grok_video.operators._reattach import Found, find_earlier
from airflow_grok_video.operators._spend import refuse_beyond_run_cap, spend_journal
from airflow_grok_video.outcome import push_failure, push_success
from airflow_grok_video.polling import DEFAULT_MAX_POLL_INTERVAL, PollSchedule, VideoWait
from airflow_grok_video.spend_caps import SpendPolicy
from airflow_grok_video.validation import MODEL, build_create_body
from airflow_grok_video.video_task import VideoTask, url_for_logs

if TYPE_CHECKING:
    from datetime import datetime

    from airflow.providers.common.compat.openlineage.facet import Dataset, RunFacet
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context

#: The XCom key under which the create operator pushes what was bought: the video task id, what
#: :func:`bought` says, whether an earlier try bought it, and the estimated cost when the connection
#: gives a price.
PURCHASE_XCOM_KEY = "purchase"


def _seconds(value: Any) -> bool:
    """Whether ``value`` is a finite number of seconds above 0."""
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 < value < math.inf


class Preflight(NamedTuple):
    """
    What the pre-flight read and checked, for the create.

    :param body: the create request's body.
    :param price: the connection's price, if it gives one.
    :param spend: the spend caps in force, if any.
    """

    body: dict[str, Any]
    price: Price | None
    spend: SpendPolicy | None


def bought(body: dict[str, Any]) -> dict[str, Any]:
    """
    What a create request buys, as the ``purchase`` XCom (and a kept video's asset event) tells it.

    :param body: the create request's JSON body.
    """
    shape: dict[str, Any] = {key: body[key] for key in ("ratio", "orientation") if key in body}
    return {
        "model": body["model"],
        "seconds": body["duration"],
        **shape,
        "prompt": body["prompt"],
        "prompt_sha256": hashlib.sha256(body["prompt"].encode()).hexdigest(),
    }


def purchase(
    video_task_id: str, body: dict[str, Any], price: Price | None, *, reattached: bool
) -> dict[str, Any]:
    """
    One video's ``purchase`` record (see :data:`PURCHASE_XCOM_KEY`).

    :param video_task_id: the API's video task id.
    :param body: the create request's JSON body.
    :param price: the connection's price, if it gives one.
    :param reattached: whether an earlier try bought it.
    """
    record: dict[str, Any] = {"video_task_id": video_task_id, **bought(body)}
    if price is not None:
        record.update(estimated_cost=price.cost(body["duration"]), currency=price.currency)
    return {**record, "reattached": reattached}


class GrokCreateVideoOperator(BaseOperator):
    """
    Create one Grok 1.5 video task and return the API's video task id (XCom ``return_value``).

    Every parameter is checked against the API's rules after templating and before any request
    is sent: a bad value fails the task at once, naming the field, the value and what is
    allowed, and nothing is billed. The create is sent again only when the server cannot have
    accepted it; when a video may have been created but its id is unknown, the task fails
    without retries rather than paying twice.

    **Durable** (the default, Airflow 3.3+): the create is recorded in the task state store
    before it is sent, and the video task id as soon as the API answers. A later try of the
    same task instance reattaches to that video instead of buying another: a video still
    queued or processing is returned (or waited for), a completed one is returned at once, and
    only a ``failed`` video (or one whose undocumented status says it ended), or one the API itself
    says it does not know (HTTP 404 in its own envelope), leads to a new create. If an earlier
    try died while its create was in flight, the video may exist and be billed while its id is
    unknown: the try fails (``on_uncertain_create="fail"``) unless told to create again.

    With ``wait_for_completion=True`` it also waits for the video (in the worker, or deferred to
    :class:`~airflow_grok_video.triggers.grok_video.GrokVideoTrigger`), pushes its URL under
    the XCom key ``video_url``, and still returns the video task id. Otherwise wait with
    :class:`~airflow_grok_video.sensors.grok_video.GrokVideoSensor`. A wait that ends on the video
    (done or failed), and a retry that finds its earlier try's video done, push the record of how
    under ``video_outcome`` (:mod:`airflow_grok_video.outcome`), a failure's before the task fails.

    **OpenLineage** (with the ``openlineage`` extra): the task's events report the reference image
    as input, the video bought (the API's video task) as output once it exists, and the
    ``grokVideoGeneration`` run facet (model, seconds, prompt and its hash, ratio or orientation,
    video task id). See "Lineage (OpenLineage)" in the docs.

    :param prompt: the text prompt (templated); must contain more than whitespace.
    :param image_url: the reference image URL, http(s) (templated).
    :param image_urls: a list holding the reference image URL (templated); with ``image_url``,
        exactly one URL in total is required.
    :param duration: 10 or 15 seconds of video (templated).
    :param ratio: ``16:9``, ``9:16``, ``1:1``, ``3:2`` or ``2:3`` (templated); the API's default is 16:9.
    :param orientation: ``landscape`` (16:9) or ``portrait`` (9:16) (templated); not with ``ratio``.
    :param model: ``grok-imagine-video-1.5``, or its aliases ``grok-1.5`` and ``grok_1_5`` (templated).
    :param grok_conn_id: the Airflow connection id.
    :param wait_for_completion: wait until the video has a URL before finishing.
    :param poll_interval: the shortest wait between two queries while waiting, in seconds.
    :param timeout: seconds to wait for the video, per try.
    :param deferrable: wait in the triggerer; defaults to ``[operators] default_deferrable``.
    :param durable: record creates in the task state store so that retries reattach (Airflow 3.3+).
    :param max_poll_interval: the longest wait between two queries: in between, queries follow the
        video's progress (see "Waiting, polling and timeouts" in the docs). ``None``, or a value not
        above ``poll_interval``, polls every ``poll_interval`` seconds.
    :param on_uncertain_create: what a try does when an earlier try's create may have been billed
        but its id is unknown: ``"fail"`` (the default) or ``"recreate"`` (accept paying twice).
    :param spend_caps: caps for this task (cap name to limit, e.g. ``{"videos_per_run": 10}``; the names
        are ``<videos|seconds|cost>_per_<run|day|month>``), lowering the connection's ``spend_caps``
        (never raising them). A create that would cross a cap fails without retries and sends
        nothing. Caps need the connection's ``spend_cap_conn_id`` (see "Spend caps" in the docs).
    """

    template_fields: Sequence[str] = (
        "prompt",
        "image_url",
        "image_urls",
        "duration",
        "ratio",
        "orientation",
        "model",
    )
    template_fields_renderers = {"prompt": "md"}
    operator_extra_links = (GrokVideoLink(),)
    ui_color = "#d2e3fc"
    #: What the task returns (XCom ``return_value``): the video task id; a subclass that always waits
    #: (``@task.grok_video``) may return the ``video_url`` instead.
    returns: SuccessValue = "video_task_id"

    def __init__(
        self,
        *,
        prompt: str,
        image_url: str | None = None,
        image_urls: list[str] | None = None,
        duration: int = 10,
        ratio: str | None = None,
        orientation: str | None = None,
        model: str = MODEL,
        grok_conn_id: str = GrokVideoHook.default_conn_name,
        wait_for_completion: bool = False,
        poll_interval: float = 15.0,
        timeout: float = 60 * 60,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        durable: bool = True,
        on_uncertain_create: Literal["fail", "recreate"] = "fail",
        max_poll_interval: float | None = DEFAULT_MAX_POLL_INTERVAL,
        spend_caps: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        PollSchedule(poll_interval, max_poll_interval)  # refuses bad intervals before the DAG runs
        if on_uncertain_create not in ("fail", "recreate"):
            raise ValueError(f"on_uncertain_create must be 'fail' or 'recreate', got {on_uncertain_create!r}")
        self.prompt = prompt
        self.image_url = image_url
        self.image_urls = image_urls
        self.duration = duration
        self.ratio = ratio
        self.orientation = orientation
        self.model = model
        self.grok_conn_id = grok_conn_id
        self.wait_for_completion = wait_for_completion
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.deferrable = deferrable
        self.durable = durable
        self.on_uncertain_create = on_uncertain_create
        self.max_poll_interval = max_poll_interval
        self.spend_caps = spend_caps
        self._video_task_id: str | None = None  # the video this try bought or reattached to
        self._video_url: str | None = None  # its URL, once this try has seen it done

    @cached_property
    def hook(self) -> GrokVideoHook:
        """The hook this operator calls the API through."""
        return GrokVideoHook(self.grok_conn_id)

    def execute(self, context: Context) -> str | None:
        """Check everything, then reattach to this task instance's video or create one; wait if asked."""
        body, price, spend = self.preflight()
        if spend is not None:
            self._check_expansion(spend, context)
        digests = fingerprint(body)
        ledger = self._ledger(context)
        earlier = self._reattach(ledger, digests, context) if ledger else None
        if earlier is not None:
            video_task_id = earlier.task_id
        else:
            spent = spend_journal(
                spend,
                body,
                price,
                context,
                grok_conn_id=self.grok_conn_id,
                dag_id=self.dag_id,
                task_id=self.task_id,
            )
            journal = JournalChain(spent, LedgerJournal(ledger, digests) if ledger else None)
            video_task_id = self._create(body, journal, price)
        self._video_task_id = video_task_id
        self._push_purchase(context, video_task_id, body, price, reattached=earlier is not None)
        if self.wait_for_completion and not (earlier and earlier.succeeded):
            self._wait(video_task_id, context)
        return self._returned()

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str | None:
        """
        Finish a deferred wait: push the video URL and return what the task returns, or raise what went wrong.

        :param context: the task's context.
        :param event: the trigger's event.
        """
        from airflow_grok_video.triggers.grok_video import video_url_from_event

        if isinstance(event, dict) and event.get("video_task_id"):
            self._video_task_id = str(event["video_task_id"])
        try:
            video_url = video_url_from_event(event, timeout_error=AirflowException)
        except GrokVideoGenerationFailed as failure:
            push_failure(context, failure)
            self._count("failed")
            raise
        expires = event.get("url_expires_at")
        self._done(context, str(event["video_task_id"]), video_url, url_expires_at=expires)
        return self._returned()

    def _returned(self) -> str | None:
        """What the task returns: see :attr:`returns`."""
        return self._video_url if self.returns == "video_url" else self._video_task_id

    # -- OpenLineage ----------------------------------------------------------------------

    def get_openlineage_facets_on_start(self) -> OperatorLineage[Dataset, RunFacet]:
        """
        For OpenLineage's START event: the reference image as input, and what the create will buy.

        The OpenLineage provider calls it after templating; it reads nothing but the parameters.
        """
        return self._openlineage(None)

    def get_openlineage_facets_on_complete(self, task_instance: object) -> OperatorLineage[Dataset, RunFacet]:
        """
        For OpenLineage's COMPLETE (and FAIL) event: also the video bought, as output, with its id.

        The output's namespace is the connection's base URL as ``scheme://host[:port]`` (read from the
        connection, never its key); its name is the video's query endpoint,
        ``/api/open-api/v1/videos/<video task id>``.

        :param task_instance: the task instance that ran (unused).
        """
        return self._openlineage(self._video_task_id)

    def _openlineage(self, video_task_id: str | None) -> OperatorLineage[Dataset, RunFacet]:
        """What the task reads and buys, and the video ``video_task_id`` when one was bought."""
        from airflow_grok_video.lineage import generation_facet, lineage, url_dataset, video_task_dataset

        try:
            body: dict[str, Any] | None = self._body()
        except GrokVideoValidationError:
            body = None  # invalid parameters: nothing was bought, nothing to describe
        inputs = [url_dataset(url) for url in body["image_urls"]] if body else []
        outputs = []
        if video_task_id:
            outputs.append(video_task_dataset(self.hook.base_url, video_task_id))
        facet = generation_facet({"video_task_id": video_task_id, **bought(body)}) if body else None
        return lineage(inputs, outputs, facet)

    def preflight(self) -> Preflight:
        """
        Check every argument and connection setting the task uses, before any request is sent.

        The one step both the worker and the deferred paths start with: after it, nothing the task
        does with its own settings can fail once a video has been bought.

        :return: the create's body, the connection's price and the spend caps in force.
        :raises GrokVideoValidationError: naming the argument or extra, its value and what is allowed.
        """
        body = self._body()
        for name in ("wait_for_completion", "deferrable", "durable"):
            if not isinstance(getattr(self, name), bool):
                raise GrokVideoValidationError(name, getattr(self, name), "must be True or False")
        if self.on_uncertain_create not in ("fail", "recreate"):
            raise GrokVideoValidationError(
                "on_uncertain_create", self.on_uncertain_create, "must be 'fail' or 'recreate'"
            )
        if self.wait_for_completion:
            if not _seconds(self.timeout):
                raise GrokVideoValidationError(
                    "timeout", self.timeout, "must be a finite number of seconds > 0"
                )
            PollSchedule(self.poll_interval, self.max_poll_interval)
        self.hook.check_connection()
        spend = self.hook.spend_policy(self.spend_caps, task_id=self.task_id)
        return Preflight(body, self.hook.price(), spend)

    def _body(self) -> dict[str, Any]:
        """The create request's body, from the rendered parameters; raises on an invalid one."""
        return build_create_body(
            prompt=self.prompt,
            image_url=self.image_url,
            image_urls=self.image_urls,
            duration=self.duration,
            ratio=self.ratio,
            orientation=self.orientation,
            model=self.model,
        )

    def _push_purchase(
        self,
        context: Context,
        video_task_id: str,
        body: dict[str, Any],
        price: Price | None,
        *,
        reattached: bool,
    ) -> None:
        """Push what this task instance bought (see :data:`PURCHASE_XCOM_KEY`)."""
        record = purchase(video_task_id, body, price, reattached=reattached)
        context["ti"].xcom_push(key=PURCHASE_XCOM_KEY, value=record)

    # -- creating, at most once -------------------------------------------------------------

    def _ledger(self, context: Context) -> CreateLedger | None:
        if not self.durable:
            return None
        ledger = CreateLedger.of(context)
        if ledger is None and self.retries:
            self.log.warning(
                "This Airflow has no task state store (it came with Airflow 3.3): a retry of this task "
                "cannot find the video an earlier try created and may create (and pay for) a second one."
            )
        return ledger

    def _reattach(self, ledger: CreateLedger, digests: dict[str, str], context: Context) -> VideoTask | None:
        """Return the video an earlier try bought for this same request, if it is still worth having."""
        earlier = find_earlier(ledger, digests, self.hook)
        if earlier.found is Found.UNCERTAIN and earlier.record is not None:
            self._refuse_or_accept_uncertain(earlier.record)
        if earlier.why:
            self.log.warning("Creating a new video: %s", earlier.why)
        if earlier.found is not Found.USABLE or earlier.task is None or earlier.record is None:
            return None
        task = earlier.task
        self.log.info(
            "Reattaching to video %s (%s; now %s)", task.task_id, earlier.record.describe(), task.describe()
        )
        self._count("reattached")
        if task.succeeded and task.video_url:
            self._done(context, task.task_id, task.video_url, url_expires_at=task.url_expires_at())
        return task

    def _refuse_or_accept_uncertain(self, record: CreateRecord) -> None:
        message = (
            f"An earlier try of this task ({record.describe()}) did not learn the video task id: a video "
            "may have been created and billed. To avoid paying twice, no new create is sent. Check the "
            "account's video tasks; to accept the risk and create again, set on_uncertain_create='recreate'."
        )
        if self.on_uncertain_create == "fail":
            self._count("uncertain_create_refused")
            raise AirflowFailException(message)
        self.log.warning("%s Creating again, as on_uncertain_create='recreate' asks.", message)

    def _check_expansion(self, spend: SpendPolicy, context: Context) -> None:
        """Refuse every map index before any buys, when the task asks for more videos than its run's cap."""
        if spend.cap("videos_per_run") is None:
            return
        ti = context["ti"]
        asked = ti.get_ti_count(dag_id=self.dag_id, task_ids=[self.task_id], run_ids=[ti.run_id])
        what = "no map index buys any"
        refuse_beyond_run_cap(spend, asked, task_id=self.task_id, dag_id=self.dag_id, what=what)

    def _create(self, body: dict[str, Any], journal: CreateJournal, price: Price | None) -> str:
        try:
            data = self.hook.create_video(**body, journal=journal)
        except GrokVideoSpendCapError:
            self._count("spend_cap_refused")
            raise
        except GrokVideoUncertainCreateError:
            self._count("uncertain_create")
            raise
        seconds = int(body["duration"])
        cost = price.cost(seconds) if price else None
        metrics.count_bought(dag_id=self.dag_id, task_id=self.task_id, seconds=seconds, cost=cost)
        return str(data["task_id"])

    # -- waiting --------------------------------------------------------------------------

    def _wait(self, video_task_id: str, context: Context) -> None:
        if self.deferrable:
            from airflow_grok_video.triggers.grok_video import defer_until_done

            defer_until_done(
                self,
                video_task_id=video_task_id,
                grok_conn_id=self.grok_conn_id,
                poll_interval=self.poll_interval,
                max_poll_interval=self.max_poll_interval,
                timeout=self.timeout,
                return_value=self.returns,
            )
        deadline = time.time() + self.timeout
        wait = VideoWait(video_task_id, PollSchedule(self.poll_interval, self.max_poll_interval), deadline)
        time.sleep(wait.first_delay(time.time()))
        while True:
            task = self.hook.get_video_task(video_task_id, deadline=deadline)
            step = wait.step(task, time.time())
            if step.status == "success" and step.task.video_url:
                self._done(
                    context, video_task_id, step.task.video_url, url_expires_at=step.task.url_expires_at()
                )
                return
            if step.status == "failed":
                failure = GrokVideoGenerationFailed(video_task_id, step.task.error_message)
                push_failure(context, failure)
                self._count("failed")
                raise failure
            if step.status == "timeout":
                raise AirflowException(step.message)
            self.log.info("%s", step.message)
            time.sleep(step.delay)

    def _done(
        self,
        context: Context,
        video_task_id: str,
        video_url: str,
        *,
        url_expires_at: datetime | str | None = None,
    ) -> None:
        """
        The video is done: log it (without the URL's query), keep its URL, push ``video_url`` and the outcome.

        :param context: the task's context.
        :param video_task_id: the API's video task id.
        :param video_url: the video's URL.
        :param url_expires_at: when the URL stops working (a ``datetime`` or ISO 8601 text), when known.
        """
        self.log.info("Grok video task %s: completed, %s", video_task_id, url_for_logs(video_url))
        self._video_url = video_url
        push_success(context, video_task_id, video_url, url_expires_at=url_expires_at)

    def _count(self, event: str, by: int = 1) -> None:
        metrics.count(event, dag_id=self.dag_id, task_id=self.task_id, by=by)
