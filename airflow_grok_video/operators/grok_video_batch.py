"""The operator that buys a list of Grok 1.5 videos in one task, and waits for all of them."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, BaseOperator, conf

from airflow_grok_video import metrics
from airflow_grok_video.batch import ItemResult, judge, outcomes
from airflow_grok_video.billing import JournalChain, Verdict
from airflow_grok_video.exceptions import (
    GrokVideoAPIError,
    GrokVideoSpendCapError,
    GrokVideoUncertainCreateError,
    GrokVideoValidationError,
)
from airflow_grok_video.hooks.grok_video import GrokVideoHook, Price
from airflow_grok_video.hooks.retry import Pacer
from airflow_grok_video.operators._ledger import CreateLedger, LedgerJournal, fingerprint, item_key
from airflow_grok_video.operators._reattach import Earlier, Found, find_earlier
from airflow_grok_video.operators._spend import refuse_beyond_run_cap, spend_journal
from airflow_grok_video.operators.grok_video import PURCHASE_XCOM_KEY, _seconds, purchase
from airflow_grok_video.outcome import push_outcomes
from airflow_grok_video.polling import DEFAULT_MAX_POLL_INTERVAL, DEFERRAL_GRACE, PollSchedule, VideoWait
from airflow_grok_video.spend_caps import SpendPolicy
from airflow_grok_video.validation import MODEL, build_create_body, create_fields
from airflow_grok_video.video_task import url_for_logs

if TYPE_CHECKING:
    from airflow.sdk import Context

T = TypeVar("T")

#: Item statuses after which a retry of the task could end otherwise (the video may still finish).
_MAY_STILL_FINISH = frozenset({"timeout", "error"})


class GrokCreateVideoBatchOperator(BaseOperator):
    """
    Buy a list of videos in one task, wait for all of them, and return one result per item, in input order.

    Each item is a prompt (a ``str``) or a mapping of the create's fields (``prompt``, ``image_url``,
    ``image_urls``, ``duration``, ``ratio``, ``orientation``, ``model``) over the operator's own.
    Every item is checked, with the connection and every setting, before the first is bought: one
    bad item means nothing is bought.

    Each item is bought as :class:`~airflow_grok_video.operators.grok_video.GrokCreateVideoOperator`
    buys its one video: the billing decision per item, the spend caps per item, and (Airflow 3.3+)
    one ledger record per item in the task state store, so that a retry or a cleared task reattaches
    to every video already bought and buys only what is missing. An item whose video failed is not
    bought again by a retry unless ``rebuy_failed``; an item whose create may have been billed
    without its id being known is reported ``uncertain`` and not bought again unless
    ``on_uncertain_create="recreate"``. At most ``max_in_flight`` creates are in flight at once, and
    an HTTP 429 pauses every one for the ``Retry-After`` it asks.

    Then it waits once: deferred (the default with ``[operators] default_deferrable``) to one
    :class:`~airflow_grok_video.triggers.grok_video_batch.GrokVideoBatchTrigger` for every video,
    which ends the task in the triggerer where Airflow allows, or in the worker.

    It returns (XCom ``return_value``) a list with one result per item, in input order:
    ``{"index", "status", "video_task_id", "video_url", "error", "reattached"}``, where ``status``
    is ``success`` (with ``video_url``), ``failed`` (with the API's message), ``uncertain``,
    ``refused`` (a spend cap or the API refused it; nothing billed), ``timeout`` or ``error``. It
    pushes under ``purchase`` one record per video bought, and under ``video_outcome`` one record
    per item whose wait ended on its video's end (``success`` or ``failed``, with ``index``; see
    :mod:`airflow_grok_video.outcome`), before it judges the batch. The task fails when fewer than
    ``min_success`` items succeeded (every item, by default), naming each item that did not and why;
    without Airflow retries when a retry could not change that.

    :param items: the videos to buy: prompts, or mappings of create fields (templated).
    :param prompt: the prompt of items that give none (templated).
    :param image_url: the reference image URL of every item that gives none (templated).
    :param image_urls: a list holding the reference image URL, instead of ``image_url`` (templated).
    :param duration: 10 or 15 seconds, for items that give none (templated).
    :param ratio: the ratio for items that give none (templated); not with ``orientation``.
    :param orientation: ``landscape`` or ``portrait`` for items that give none (templated).
    :param model: the model for items that give none (templated).
    :param grok_conn_id: the Airflow connection id.
    :param max_in_flight: the most creates sent at once.
    :param min_success: how many items must succeed for the task to succeed; ``None`` means every item.
    :param rebuy_failed: on a retry, buy again the items whose video failed (by default they stay failed).
    :param poll_interval: the shortest wait between two queries of a video, in seconds.
    :param max_poll_interval: the longest wait between two queries of a video.
    :param timeout: seconds to wait for the videos, per try.
    :param deferrable: wait in the triggerer; defaults to ``[operators] default_deferrable``.
    :param durable: record each item's create in the task state store so that retries reattach (3.3+).
    :param on_uncertain_create: ``"fail"`` reports an item whose earlier create may have been billed
        as ``uncertain``; ``"recreate"`` buys it again (accepting to pay twice).
    :param spend_caps: caps for this task, lowering the connection's (see "Spend caps" in the docs);
        ``videos_per_run`` refuses the whole batch before buying any when it asks for more.
    """

    template_fields: Sequence[str] = (
        "items",
        "prompt",
        "image_url",
        "image_urls",
        "duration",
        "ratio",
        "orientation",
        "model",
    )
    ui_color = "#d2e3fc"

    def __init__(
        self,
        *,
        items: list[Any],
        prompt: str | None = None,
        image_url: str | None = None,
        image_urls: list[str] | None = None,
        duration: int = 10,
        ratio: str | None = None,
        orientation: str | None = None,
        model: str = MODEL,
        grok_conn_id: str = GrokVideoHook.default_conn_name,
        max_in_flight: int = 4,
        min_success: int | None = None,
        rebuy_failed: bool = False,
        poll_interval: float = 15.0,
        max_poll_interval: float | None = DEFAULT_MAX_POLL_INTERVAL,
        timeout: float = 60 * 60,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        durable: bool = True,
        on_uncertain_create: Literal["fail", "recreate"] = "fail",
        spend_caps: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        PollSchedule(poll_interval, max_poll_interval)  # refuses bad intervals before the DAG runs
        self.items = items
        self.prompt = prompt
        self.image_url = image_url
        self.image_urls = image_urls
        self.duration = duration
        self.ratio = ratio
        self.orientation = orientation
        self.model = model
        self.grok_conn_id = grok_conn_id
        self.max_in_flight = max_in_flight
        self.min_success = min_success
        self.rebuy_failed = rebuy_failed
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.timeout = timeout
        self.deferrable = deferrable
        self.durable = durable
        self.on_uncertain_create = on_uncertain_create
        self.spend_caps = spend_caps

    @cached_property
    def hook(self) -> GrokVideoHook:
        """The hook this operator calls the API through."""
        return GrokVideoHook(self.grok_conn_id)

    def execute(self, context: Context) -> list[dict[str, Any]]:
        """Check every item, buy (or reattach to) each, then wait for all of them."""
        bodies = self.bodies()
        price, spend = self.preflight(len(bodies))
        if spend is not None:
            refuse_beyond_run_cap(
                spend,
                len(bodies) * self._map_count(context),
                task_id=self.task_id,
                dag_id=self.dag_id,
                what="none of the batch is bought",
            )
        results = self._buy(bodies, price, spend, context)
        self._push_purchase(context, results, bodies, price)
        if any(result.status == "waiting" for result in results):
            results = self._wait(results, context)
        return self._finish(results, context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> list[dict[str, Any]]:
        """
        Finish the deferred wait: return every result, or fail by the batch's rule.

        :param context: the task's context.
        :param event: the batch trigger's event.
        """
        if not isinstance(event, dict) or not isinstance(event.get("results"), list):
            raise AirflowException(f"Not an event of GrokVideoBatchTrigger: {type(event).__name__}")
        return self._finish([ItemResult.from_dict(result) for result in event["results"]], context)

    # -- checking everything first -----------------------------------------------------------

    def bodies(self) -> list[dict[str, Any]]:
        """
        Every item's create body, in input order.

        :raises GrokVideoValidationError: for the first invalid item, naming it (``items[3]``), the
            field, the value and what is allowed.
        """
        if not isinstance(self.items, list | tuple) or not self.items:
            allowed = "must be a non-empty list of prompts or mappings"
            raise GrokVideoValidationError("items", self.items, allowed)
        return [self._body(index, item) for index, item in enumerate(self.items)]

    def _body(self, index: int, item: Any) -> dict[str, Any]:
        name = f"items[{index}]"
        fields = {
            "prompt": self.prompt,
            "image_url": self.image_url,
            "image_urls": self.image_urls,
            "duration": self.duration,
            "ratio": self.ratio,
            "orientation": self.orientation,
            "model": self.model,
            **create_fields(item, name=name),
        }
        try:
            return build_create_body(**fields)
        except GrokVideoValidationError as error:
            raise GrokVideoValidationError(f"{name}.{error.field}", error.value, error.allowed) from error

    def preflight(self, count: int) -> tuple[Price | None, SpendPolicy | None]:
        """
        Check every setting and the connection, before any request is sent.

        :param count: how many items the batch has.
        :return: the connection's price and the spend caps in force.
        :raises GrokVideoValidationError: naming the argument or extra, its value and what is allowed.
        """
        for name in ("deferrable", "durable", "rebuy_failed"):
            if not isinstance(getattr(self, name), bool):
                raise GrokVideoValidationError(name, getattr(self, name), "must be True or False")
        if not _whole(self.max_in_flight) or self.max_in_flight < 1:
            raise GrokVideoValidationError("max_in_flight", self.max_in_flight, "must be a whole number >= 1")
        if self.min_success is not None and not (_whole(self.min_success) and 0 <= self.min_success <= count):
            allowed = f"must be None or a whole number from 0 to {count} (the items)"
            raise GrokVideoValidationError("min_success", self.min_success, allowed)
        if self.on_uncertain_create not in ("fail", "recreate"):
            raise GrokVideoValidationError(
                "on_uncertain_create", self.on_uncertain_create, "must be 'fail' or 'recreate'"
            )
        if not _seconds(self.timeout):
            raise GrokVideoValidationError("timeout", self.timeout, "must be a finite number of seconds > 0")
        PollSchedule(self.poll_interval, self.max_poll_interval)
        self.hook.check_connection()
        return self.hook.price(), self.hook.spend_policy(self.spend_caps, task_id=self.task_id)

    @staticmethod
    def _map_count(context: Context) -> int:
        ti = context["ti"]
        return int(ti.get_ti_count(dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id]))

    # -- buying, each item at most once ------------------------------------------------------

    def _buy(
        self, bodies: list[dict[str, Any]], price: Price | None, spend: SpendPolicy | None, context: Context
    ) -> list[ItemResult]:
        """Reattach to or buy every item, ``max_in_flight`` at once; raise at the end if one was not sent."""
        if self.durable and "task_state_store" not in context and self.retries:
            self.log.warning(
                "This Airflow has no task state store (it came with Airflow 3.3): a retry of this task "
                "cannot find the videos an earlier try bought and may buy (and pay for) them again."
            )
        pacer, airflow_calls = Pacer(), _TaskThread()
        pool = ThreadPoolExecutor(max_workers=self.max_in_flight, thread_name_prefix="grok-batch")
        try:
            futures = [
                pool.submit(self._item, index, body, price, spend, pacer, airflow_calls, context)
                for index, body in enumerate(bodies)
            ]
            airflow_calls.serve(futures)
        finally:  # also when the task is stopped (execution_timeout): items not started never are
            airflow_calls.close()
            pool.shutdown(wait=True, cancel_futures=True)
        results: list[ItemResult] = []
        unsent: list[str] = []
        for index, future in enumerate(futures):
            try:
                result = future.result()
            except (GrokVideoAPIError, OSError) as error:  # nothing bought for it: a retry may buy it
                unsent.append(f"item {index}: {error}")
                result = ItemResult(index, "error", error=str(error))
            results.append(replace(result, seconds=int(bodies[index]["duration"])))
        if unsent:
            self._push_purchase(context, results, bodies, price)
            raise AirflowException(
                f"{len(unsent)} of {len(bodies)} items could not be bought now (a retry buys only what is "
                f"missing): " + "; ".join(unsent)
            )
        return results

    def _item(
        self,
        index: int,
        body: dict[str, Any],
        price: Price | None,
        spend: SpendPolicy | None,
        pacer: Pacer,
        airflow_calls: _TaskThread,
        context: Context,
    ) -> ItemResult:
        """
        Reattach to item ``index``'s earlier video, or buy it (in one of the batch's threads).

        Only the HTTP requests run side by side: every call to Airflow (the ledger in the task state
        store, the spend store and its connection) is handed to the task's own thread
        (``airflow_calls``), where Airflow's task runner expects them (``dag.test()`` sends them
        in-process, on the task's database session).
        """
        digests = fingerprint(body)
        ledger = None
        if self.durable and context.get("task_state_store") is not None:
            store = _Serialized(context["task_state_store"], airflow_calls)
            ledger = CreateLedger(store, int(getattr(context["ti"], "try_number", 1) or 1), item_key(index))
        if ledger is not None and ledger.try_number > 1:  # a first try has nothing to find
            earlier = find_earlier(ledger, digests, self.hook)
            kept = self._kept(index, earlier)
            if kept is not None:
                return kept
            if earlier.why:
                self.log.warning("Item %d: creating a new video: %s", index, earlier.why)
        journal = _SerialJournal(
            JournalChain(
                spend_journal(
                    spend,
                    body,
                    price,
                    context,
                    grok_conn_id=self.grok_conn_id,
                    dag_id=self.dag_id,
                    task_id=self.task_id,
                ),
                LedgerJournal(ledger, digests) if ledger else None,
            ),
            airflow_calls,
        )
        try:
            data = self.hook.create_video(**body, journal=journal, pacer=pacer)
        except GrokVideoSpendCapError as error:
            self._count("spend_cap_refused")
            return ItemResult(index, "refused", error=str(error))
        except GrokVideoUncertainCreateError as error:
            self._count("uncertain_create")
            return ItemResult(index, "uncertain", error=str(error))
        except GrokVideoAPIError as error:
            if error.verdict is Verdict.REFUSED:
                return ItemResult(index, "refused", error=str(error))
            raise
        seconds = int(body["duration"])
        cost = price.cost(seconds) if price else None
        metrics.count_bought(dag_id=self.dag_id, task_id=self.task_id, seconds=seconds, cost=cost)
        return ItemResult(index, "waiting", str(data["task_id"]), created=time.time())

    def _kept(self, index: int, earlier: Earlier) -> ItemResult | None:
        """What an earlier try's create of item ``index`` gives this try, or ``None`` to buy it now."""
        record, task = earlier.record, earlier.task
        if earlier.found is Found.USABLE and task is not None:
            self.log.info("Item %d: reattaching to video %s (%s)", index, task.task_id, task.describe())
            self._count("reattached")
            if task.succeeded and task.video_url:
                return ItemResult(index, "success", task.task_id, task.video_url, reattached=True)
            return ItemResult(index, "waiting", task.task_id, reattached=True)
        if earlier.found is Found.FAILED and not self.rebuy_failed and task is not None:
            self.log.info("Item %d: video %s failed in an earlier try; not bought again", index, task.task_id)
            return ItemResult(index, "failed", task.task_id, error=task.error_message, reattached=True)
        if earlier.found is Found.UNCERTAIN and record is not None:
            message = (
                f"an earlier try of this task ({record.describe()}) did not learn this item's video task "
                "id: a video may have been created and billed, so it is not bought again "
                "(on_uncertain_create='recreate' would)"
            )
            if self.on_uncertain_create == "fail":
                self._count("uncertain_create_refused")
                return ItemResult(index, "uncertain", error=message)
            self.log.warning(
                "Item %d: %s; buying it again, as on_uncertain_create='recreate' asks", index, message
            )
        return None

    def _push_purchase(
        self, context: Context, results: list[ItemResult], bodies: list[dict[str, Any]], price: Price | None
    ) -> None:
        """Push one record per video bought or reattached to (as the create operator's ``purchase``)."""
        purchases = [
            {"index": r.index, **purchase(r.video_task_id, bodies[r.index], price, reattached=r.reattached)}
            for r in results
            if r.video_task_id is not None
        ]
        context["ti"].xcom_push(key=PURCHASE_XCOM_KEY, value=purchases)

    # -- waiting, once for every item --------------------------------------------------------

    def _wait(self, results: list[ItemResult], context: Context) -> list[ItemResult]:
        if self.deferrable:
            from airflow_grok_video.triggers.grok_video_batch import GrokVideoBatchTrigger

            waiting = sum(result.status == "waiting" for result in results)
            self.log.info("Deferring: waiting for %d videos in the triggerer", waiting)
            trigger = GrokVideoBatchTrigger(
                items=[result.for_trigger() for result in results],
                grok_conn_id=self.grok_conn_id,
                poll_interval=self.poll_interval,
                end_time=time.time() + self.timeout,
                max_poll_interval=self.max_poll_interval,
                min_success=self.min_success,
                end_here=True,
            )
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                timeout=timedelta(seconds=self.timeout) + DEFERRAL_GRACE,
            )
        return self._wait_in_worker(results, deadline=time.time() + self.timeout)

    def _wait_in_worker(self, results: list[ItemResult], deadline: float) -> list[ItemResult]:
        """Query each waiting video on its own adaptive schedule, one at a time, until all are done."""
        schedule = PollSchedule(self.poll_interval, self.max_poll_interval)
        waits: dict[int, tuple[VideoWait, float]] = {}
        now = time.time()
        for result in results:
            if result.status == "waiting" and result.video_task_id is not None:
                wait = VideoWait(result.video_task_id, schedule, deadline)
                waits[result.index] = (wait, now + wait.first_delay(now))
        while waits:
            index = min(waits, key=lambda i: waits[i][1])
            wait, due = waits.pop(index)
            time.sleep(max(0.0, due - time.time()))
            step = wait.step(self.hook.get_video_task(wait.video_task_id, deadline=deadline), time.time())
            if step.status == "waiting":
                waits[index] = (wait, time.time() + step.delay)
                continue
            if step.status == "success":
                results[index] = replace(results[index], status="success", video_url=step.task.video_url)
            else:
                error = step.task.error_message if step.status == "failed" else step.message
                results[index] = replace(results[index], status=step.status, error=error)
            shown = f", {url_for_logs(step.task.video_url)}" if step.task.video_url else ""
            self.log.info("Batch %s%s", results[index].describe(), shown)
        return results

    def _finish(self, results: list[ItemResult], context: Context) -> list[dict[str, Any]]:
        """
        Push each item's outcome, then return every result, or fail by the batch's rule.

        The task fails without retries when a retry cannot help; the outcomes pushed stay with it.

        :param results: every item's final result, in input order.
        :param context: the task's context.
        """
        push_outcomes(context, outcomes(results))
        failed = [result for result in results if result.status == "failed"]
        if failed:
            self._count("failed", by=len(failed))
        why = judge(results, self.min_success)
        if why is None:
            return [result.to_dict() for result in results]
        may_change = (self.rebuy_failed and failed) or any(r.status in _MAY_STILL_FINISH for r in results)
        raise (AirflowException if may_change else AirflowFailException)(f"Batch failed: {why}")

    def _count(self, event: str, by: int = 1) -> None:
        metrics.count(event, dag_id=self.dag_id, task_id=self.task_id, by=by)


def _whole(value: Any) -> bool:
    """Whether ``value`` is an ``int`` (not a ``bool``)."""
    return isinstance(value, int) and not isinstance(value, bool)


class _TaskThread:
    """
    Runs calls handed over by the batch's threads on the task's own thread, one at a time.

    The task's thread creates it, submits the items, then :meth:`serve` s until every item is settled.
    """

    def __init__(self) -> None:
        self.thread = threading.get_ident()
        self.calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.closed = False

    def call(self, function: Callable[[], T]) -> T:
        """
        Run ``function`` on the task's thread and return (or raise) what it does.

        :raises RuntimeError: once the task's thread has stopped serving (the task is ending).
        """
        if threading.get_ident() == self.thread:
            return function()
        done: Future[T] = Future()
        with self.lock:
            if self.closed:
                raise RuntimeError("the task is ending: no call to Airflow is made any more")
            self.calls.put((function, done))
        return done.result()

    def close(self) -> None:
        """Stop serving: every call waiting, and any made later, raises :class:`RuntimeError`."""
        with self.lock:
            self.closed = True
        while True:
            try:
                _, done = self.calls.get_nowait()
            except queue.Empty:
                return
            done.set_exception(RuntimeError("the task is ending: no call to Airflow is made any more"))

    def serve(self, futures: list[Future[Any]]) -> None:
        """Run the calls handed over until every one of ``futures`` is done."""
        while not all(future.done() for future in futures):
            try:
                function, done = self.calls.get(timeout=0.05)
            except queue.Empty:
                continue
            try:
                done.set_result(function())
            except BaseException as error:  # raised again in the thread that asked
                done.set_exception(error)


class _Serialized:
    """The task state store, each call made on the task's own thread."""

    def __init__(self, store: Any, task_thread: _TaskThread) -> None:
        self.store, self.task_thread = store, task_thread

    def get(self, key: str) -> Any:
        return self.task_thread.call(lambda: self.store.get(key))

    def set(self, key: str, value: Any) -> None:
        self.task_thread.call(lambda: self.store.set(key, value))

    def delete(self, key: str) -> None:
        self.task_thread.call(lambda: self.store.delete(key))


class _SerialJournal:
    """A create's journal (spend reservation and ledger), told on the task's own thread."""

    def __init__(self, journal: JournalChain, task_thread: _TaskThread) -> None:
        self.journal, self.task_thread = journal, task_thread

    def sending(self) -> None:
        self.task_thread.call(self.journal.sending)

    def settled(self, verdict: Verdict, video_task_id: str | None) -> None:
        self.task_thread.call(lambda: self.journal.settled(verdict, video_task_id))
