"""The hook that talks to the Jimmy AI video API (Grok 1.5 video model)."""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import weakref
from functools import cached_property
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlsplit, urlunsplit

from airflow.providers.common.compat.sdk import BaseHook

from airflow_grok_video.billing import CreateJournal, CreateOutcome, Stage, Verdict, create_error, decide
from airflow_grok_video.exceptions import GrokVideoAPIError, GrokVideoAuthError, GrokVideoValidationError
from airflow_grok_video.get_provider_info import UI_FIELD_BEHAVIOUR
from airflow_grok_video.hooks._envelope import CREATE_PATH, DEFAULT_BASE_URL, QUERY_PATH, unwrap
from airflow_grok_video.hooks.retry import Pacer, RetryPolicy, parse_retry_after
from airflow_grok_video.spend_caps import CAPS_EXTRA, STORE_EXTRA, SpendPolicy, combine, parse_caps
from airflow_grok_video.validation import MODEL, build_create_body
from airflow_grok_video.video_task import VideoTask

if TYPE_CHECKING:
    from airflow.sdk import Connection

    from airflow_grok_video.hooks._clients import AsyncClient, SyncClient
    from airflow_grok_video.hooks._settings import HttpSettings

__all__ = ["DEFAULT_BASE_URL", "GrokVideoHook", "Price", "RetryPolicy", "VideoTask"]

#: How long a connection looked up for the waits of one event loop is shared with the waits that
#: start after it, in seconds (a running wait keeps the client it made, whatever its age).
SHARED_LOOKUP_SECONDS = 60.0
#: The name of the event loop task that looks a connection up for the waits (then its id): a
#: triggerer's task dump, or a profiler, can tell it from Airflow's own.
LOOKUP_TASK_PREFIX = "grok_video connection lookup: "
# The lookups shared per event loop, by connection id and timeouts: when each started, and the lookup
# in flight (its task) or its result (the connection id and settings).
_LOOKUPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, tuple[float, Any]]] = (
    weakref.WeakKeyDictionary()
)


#: The largest ``price_per_second`` a connection may give: far above any plan, and low enough
#: that an estimate in millionths still fits the metric's 64-bit counter.
MAX_PRICE_PER_SECOND = 1_000_000_000


class Price(NamedTuple):
    """
    What a second of video costs on the user's plan, as the connection's extras say.

    :param per_second: the price of one second of video.
    :param currency: the currency's name, as the user wrote it (may be empty).
    """

    per_second: float
    currency: str = ""

    def cost(self, seconds: int) -> float:
        """
        The estimated cost of ``seconds`` of video.

        :param seconds: seconds of video.
        """
        return round(self.per_second * seconds, 6)


class GrokVideoHook(BaseHook):
    """
    Create Grok 1.5 videos and query their tasks through Jimmy AI's API.

    The connection (type ``grok_video``) holds the API key as its password and the base URL as
    its host (a full URL; empty means ``https://www.jimmyai.cn``). Requests carry the key as a
    Bearer token. Failed queries are retried with backoff (see :class:`RetryPolicy`); a create is
    retried only when the API cannot have accepted it.

    The connection's extras (proxies, CA bundle, client certificate, timeout, headers) apply the
    same way to the sync calls (``requests``, in a worker) and the async ones (``aiohttp``, in a
    triggerer): both read them through one function of :mod:`airflow_grok_video.hooks._settings`.

    :param grok_conn_id: the Airflow connection id.
    :param connect_timeout: seconds to wait for a connection to the API; ``None`` (the default)
        takes the connection's ``timeout`` extra, else 10 s.
    :param read_timeout: seconds to wait for the API's answer once connected; ``None`` (the
        default) takes the connection's ``timeout`` extra, else 60 s.
    :param retry_policy: how failed requests are retried; the default suits most users.
    """

    conn_name_attr = "grok_conn_id"
    default_conn_name = "grok_video_default"
    conn_type = "grok_video"
    hook_name = "Grok Video"

    def __init__(
        self,
        grok_conn_id: str = default_conn_name,
        *,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self.grok_conn_id = grok_conn_id
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self._sync: SyncClient | None = None
        self._sync_lock = threading.Lock()  # a batch's creates share the hook from several threads
        self._async: AsyncClient | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(grok_conn_id={self.grok_conn_id!r})"

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Shape the connection form (Airflow < 3.2; newer versions read the provider info)."""
        return UI_FIELD_BEHAVIOUR

    # -- the API's calls -------------------------------------------------------------------

    def create_video(
        self,
        *,
        prompt: str,
        image_url: str | None = None,
        image_urls: list[str] | None = None,
        duration: int = 10,
        ratio: str | None = None,
        orientation: str | None = None,
        model: str = MODEL,
        journal: CreateJournal | None = None,
        pacer: Pacer | None = None,
    ) -> dict[str, Any]:
        """
        Validate the parameters, then create one (billed) video task.

        Nothing is sent unless every parameter is valid. Each answer (or failure) is judged by the
        billing table (:mod:`airflow_grok_video.billing`): the request is sent again only when the
        API did not accept it; a refusal, or a create that may have been accepted without its id
        being known, fails without Airflow retries.

        :param prompt: the text prompt.
        :param image_url: the reference image URL (or give ``image_urls``).
        :param image_urls: a list holding the one reference image URL.
        :param duration: 10 or 15 seconds.
        :param ratio: ``16:9``, ``9:16``, ``1:1``, ``3:2`` or ``2:3``.
        :param orientation: ``landscape`` or ``portrait`` (only without ``ratio``).
        :param model: ``grok-imagine-video-1.5`` or an alias of it.
        :param journal: told right before each request is sent and right after its verdict (the
            create operator's ledger), so that a record of a create in flight spans the request
            alone, never a wait between retries.
        :param pacer: a gate shared with creates sent side by side (a batch's): each waits its turn
            before it is sent, and a 429 closes the gate for every one.
        :return: the API's ``data``: ``task_id``, ``status``, ``model``, ``created_at``.
        :raises GrokVideoValidationError: before any request, for an invalid parameter.
        :raises GrokVideoUncertainCreateError: when a video may have been created but its id is unknown.
        :raises GrokVideoAPIError: for any other API error (its ``verdict`` says which).
        """
        body = build_create_body(
            prompt=prompt,
            image_url=image_url,
            image_urls=image_urls,
            duration=duration,
            ratio=ratio,
            orientation=orientation,
            model=model,
        )
        resend_on_429 = self.resend_create_on_429()
        price = self.price()  # read now: nothing may fail between a paid answer and its record
        for attempt in self.retry_policy.attempts(creates=True, log=self.log):
            time.sleep(attempt.wait)
            if pacer is not None:
                pacer.wait_turn()
            if journal is not None:
                journal.sending()
            try:
                data = self._create_once(body, resend_on_429)
            except GrokVideoAPIError as error:
                if journal is not None and error.verdict is not None:
                    journal.settled(error.verdict, None)
                if pacer is not None:
                    pacer.answered(error)
                attempt.failed(error)
            else:
                self._log_created(data, body, price)  # first, so that the id is known whatever follows
                if journal is not None:
                    journal.settled(Verdict.ACCEPTED, str(data["task_id"]))
                return data
        raise AssertionError("unreachable: attempts() ends by raising")

    def _log_created(self, data: dict[str, Any], body: dict[str, Any], price: Price | None) -> None:
        """Log an accepted create: its video task id, model, seconds and the estimated cost."""
        seconds = int(body["duration"])
        cost = "" if price is None else f"; estimated cost {price.cost(seconds):g} {price.currency}".rstrip()
        model = data.get("model", body["model"])
        self.log.info("Created Grok video task %s (model %s, %s s%s)", data["task_id"], model, seconds, cost)

    def _create_once(self, body: dict[str, Any], resend_on_429: bool) -> dict[str, Any]:
        """Send one create; an error carries the billing table's verdict."""
        what = "create video"
        try:
            answer = self._sync_client().request("POST", CREATE_PATH, body, what)
        except GrokVideoAPIError as error:
            row = decide(CreateOutcome(Stage.NO_ANSWER if error.sent else Stage.NOT_SENT))
            if row.verdict is not Verdict.NOT_ACCEPTED:
                raise create_error(row, str(error)) from error
            error.verdict = row.verdict  # as it is: a refused key stays a refused key
            raise
        retry_after = parse_retry_after(answer.retry_after)
        return unwrap(
            answer.status,
            answer.body,
            what=what,
            retry_after=retry_after,
            creates=True,
            resend_on_429=resend_on_429,
        )

    def get_video_task(self, video_task_id: str, *, deadline: float | None = None) -> VideoTask:
        """
        Query a video task, retrying transient failures.

        :param video_task_id: the API's video task id, as returned by :meth:`create_video`.
        :param deadline: Unix time after which no retry is started.
        :return: the video task as the API describes it (status, progress, video URL, ...).
        """
        what = f"query video task {video_task_id}"
        path = _query_path(video_task_id)
        for attempt in self.retry_policy.attempts(creates=False, deadline=deadline, log=self.log):
            time.sleep(attempt.wait)
            try:
                data = self._send_sync("GET", path, None, what)
            except GrokVideoAPIError as error:
                attempt.failed(error)
            else:
                return VideoTask.from_data(data, video_task_id=video_task_id)
        raise AssertionError("unreachable: attempts() ends by raising")

    async def aget_video_task(self, video_task_id: str, *, deadline: float | None = None) -> VideoTask:
        """
        Query a video task without blocking the event loop; the async twin of :meth:`get_video_task`.

        The connection is resolved once per hook and event loop, with the same rules as the sync
        calls (its extras such as proxies, CA bundle and client certificate apply alike). The
        ``aiohttp`` session is shared by every hook on the same connection in the same event loop
        (in a triggerer: every wait on that connection); give it back with :meth:`aclose`. A hook
        used from another event loop (a second ``asyncio.run``) gets a new client there.

        :param video_task_id: the API's video task id.
        :param deadline: Unix time after which no retry is started.
        :return: the video task as the API describes it.
        """
        what = f"query video task {video_task_id}"
        path = _query_path(video_task_id)
        for attempt in self.retry_policy.attempts(creates=False, deadline=deadline, log=self.log):
            if attempt.wait:  # the first attempt does not wait: no turn of the event loop for it
                await asyncio.sleep(attempt.wait)
            try:
                data = await self._send_async(path, what)
            except GrokVideoAPIError as error:
                attempt.failed(error)
            else:
                return VideoTask.from_data(data, video_task_id=video_task_id)
        raise AssertionError("unreachable: attempts() ends by raising")

    async def aclose(self) -> None:
        """
        Give back the HTTP session the async calls used (shared per connection and event loop).

        Call it in the loop the calls ran in; from another loop, a session whose loop has closed
        is let go without touching that loop.
        """
        if self._async is not None:
            client, self._async = self._async, None
            await client.close()

    def price(self) -> Price | None:
        """
        The price per second of video from the connection's extras, or ``None`` when none is set.

        ``price_per_second`` (a number from 0 to :data:`MAX_PRICE_PER_SECOND`) and ``currency``
        (text) come from the user's own plan with Jimmy AI; the provider knows no prices.

        :raises GrokVideoValidationError: when ``price_per_second`` is not such a number, or
            ``currency`` is not text.
        """
        extras = self._connection.extra_dejson
        value = extras.get("price_per_second")
        currency = extras.get("currency")
        if currency is not None and not isinstance(currency, str):
            raise GrokVideoValidationError(
                "currency",
                currency,
                f'the extra of connection {self.grok_conn_id!r} must be text, e.g. "CNY"',
            )
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 <= value <= MAX_PRICE_PER_SECOND  # NaN fails both
        ):
            raise GrokVideoValidationError(
                "price_per_second",
                value,
                f"the extra of connection {self.grok_conn_id!r} must give a number from 0 to "
                f"{MAX_PRICE_PER_SECOND:,} (the price of one second of video on your plan), or leave it out",
            )
        return Price(float(value), currency or "")

    def check_connection(self) -> None:
        """
        Read every setting of the connection now, so that a bad one fails before anything is bought.

        Resolves the key, the extras (headers, proxy, CA bundle and client certificate, loaded as
        the triggerer loads them, timeouts), the price and ``resend_create_on_429``; sends nothing.

        :raises GrokVideoValidationError: for a bad price or ``resend_create_on_429``.
        :raises GrokVideoAPIError: (not sent) for any other setting that cannot be used.
        """
        self.price()
        self.resend_create_on_429()
        settings = self._sync_client().settings
        if settings.tls:
            from airflow_grok_video.hooks._clients import tls_context

            tls_context(self.grok_conn_id, settings)

    def resend_create_on_429(self) -> bool:
        """
        Whether a create answered HTTP 429 is sent again (the extra ``resend_create_on_429``).

        True by default. It rests on the API's 429 meaning "not accepted" (see
        :mod:`airflow_grok_video.billing`); false makes a 429 an uncertain create instead, which
        fails without being sent again.

        :raises GrokVideoValidationError: when the extra is not true or false.
        """
        value = self._connection.extra_dejson.get("resend_create_on_429", True)
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise GrokVideoValidationError(
                "resend_create_on_429",
                value,
                f"the extra of connection {self.grok_conn_id!r} must be true or false, or be left out",
            )
        return value

    def spend_policy(self, task_caps: Any = None, *, task_id: str = "") -> SpendPolicy | None:
        """
        The spend caps a create through this connection must stay within, or ``None`` when none is set.

        The connection's ``spend_caps`` extra (cap name to limit; see :mod:`airflow_grok_video.spend_caps`),
        lowered by ``task_caps``; its ``spend_cap_conn_id`` extra names the SQL connection that counts
        them (``postgres`` or ``sqlite``), required once any cap is set. A cost cap needs the
        connection's ``price_per_second``. Reads the store's connection; sends nothing.

        :param task_caps: the task's caps (the create operator's ``spend_caps``), which may only lower
            the connection's.
        :param task_id: the task's id, for messages.
        :raises GrokVideoValidationError: naming the cap or extra, its value and what is allowed.
        """
        from airflow_grok_video.hooks.spend_store import SpendStore

        extras = self._connection.extra_dejson
        source = f"the extra {CAPS_EXTRA} of connection {self.grok_conn_id!r}"
        connection = parse_caps(extras.get(CAPS_EXTRA), source)
        caps = combine(
            connection, parse_caps(task_caps, "spend_caps"), conn_id=self.grok_conn_id, task_id=task_id
        )
        store = extras.get(STORE_EXTRA)
        if store is not None and not isinstance(store, str):
            raise GrokVideoValidationError(
                STORE_EXTRA, store, f"the extra of connection {self.grok_conn_id!r} must be a connection id"
            )
        if not caps:
            return None
        priced = [cap for cap in caps if cap.measure == "cost"]
        if priced and self.price() is None:
            raise GrokVideoValidationError(
                f"spend_caps[{priced[0].name!r}]",
                priced[0].limit,
                f"a cost cap needs the extra price_per_second of connection {self.grok_conn_id!r}",
            )
        if not store or not store.strip():
            raise GrokVideoValidationError(
                STORE_EXTRA,
                store,
                f"spend caps ({', '.join(cap.name for cap in caps)}) need a store: set the extra "
                f"{STORE_EXTRA} of connection {self.grok_conn_id!r} to a postgres or sqlite connection's id",
            )
        SpendStore(store).check()
        return SpendPolicy(store, caps)

    def test_connection(self) -> tuple[bool, str]:
        """
        Make one cheap authenticated call, telling a refused key from an unreachable API.

        Queries a video task id that cannot exist: "not found" proves the key was accepted.
        """
        try:
            self._send_sync("GET", _query_path("airflow-connection-test"), None, "connection test")
        except GrokVideoAuthError as error:
            return False, str(error)
        except GrokVideoAPIError as error:
            if error.code is not None and error.http_status is not None and error.http_status < 500:
                return True, f"The API accepted the key ({error.http_status} for a made-up video task id)."
            return False, str(error)
        return True, "The API accepted the key."

    # -- plumbing ------------------------------------------------------------------------

    def _send_sync(self, method: str, path: str, body: dict[str, Any] | None, what: str) -> dict[str, Any]:
        answer = self._sync_client().request(method, path, body, what)
        retry_after = parse_retry_after(answer.retry_after)
        return unwrap(answer.status, answer.body, what=what, retry_after=retry_after)

    async def _send_async(self, path: str, what: str) -> dict[str, Any]:
        client = await self._async_client()
        answer = await client.get(path, what)
        retry_after = parse_retry_after(answer.retry_after)
        return unwrap(answer.status, answer.body, what=what, retry_after=retry_after)

    def _settings(self, conn: Connection) -> HttpSettings:
        """The connection's HTTP settings, one reading for both paths; warns of ignored extras."""
        from airflow_grok_video.hooks._settings import resolve_settings

        settings = resolve_settings(
            conn, base_url_of(conn), connect_timeout=self.connect_timeout, read_timeout=self.read_timeout
        )
        if settings.ignored:
            self.log.warning(
                "Connection %r: the extras %s are not supported by the Grok video connection and are ignored",
                self.grok_conn_id,
                ", ".join(settings.ignored),
            )
        return settings

    def _sync_client(self) -> SyncClient:
        with self._sync_lock:
            if self._sync is None:
                from airflow_grok_video.hooks._clients import SyncClient

                self._sync = SyncClient(self._settings(self._connection))
            return self._sync

    @cached_property
    def _connection(self) -> Connection:
        """The connection, looked up once for the sync calls, the price and the base URL."""
        return self.get_connection(self.grok_conn_id)

    @property
    def base_url(self) -> str:
        """The API's base URL from the connection (see :func:`base_url_of`); its key is not read."""
        return base_url_of(self._connection)

    async def _async_client(self) -> AsyncClient:
        """The hook's client in the running event loop; a client made in another loop is let go."""
        client = self._async
        if client is not None and client.loop is asyncio.get_running_loop():
            return client
        if client is not None:
            self._async = None
            await client.close()
        from airflow_grok_video.hooks._clients import AsyncClient

        conn_id, settings = await self._shared_lookup()
        self._async = AsyncClient.open(conn_id, settings)
        return self._async

    async def _shared_lookup(self) -> tuple[str, HttpSettings]:
        """
        The connection's id and HTTP settings, looked up once for the waits that start together.

        Waits on one connection in one event loop (a triggerer) share the lookup in flight, and its
        result for :data:`SHARED_LOOKUP_SECONDS`: a thousand waits starting at once make one trip
        through the secrets backends, not a thousand (each a thread's call, contending with the
        event loop). A lookup that fails is not kept; one that succeeds is kept as its result
        (not the task that made it, which would keep its event loop alive).
        """
        loop = asyncio.get_running_loop()
        lookups = _LOOKUPS.setdefault(loop, {})
        key = (self.grok_conn_id, self.connect_timeout, self.read_timeout)
        shared = lookups.get(key)
        if shared is None or time.monotonic() - shared[0] > SHARED_LOOKUP_SECONDS:
            task = loop.create_task(self._lookup(), name=f"{LOOKUP_TASK_PREFIX}{self.grok_conn_id}")
            shared = lookups[key] = (time.monotonic(), task)
            task.add_done_callback(functools.partial(_settle_lookup, lookups, key, shared))
        found = shared[1]
        if isinstance(found, tuple):
            return found
        return await asyncio.shield(found)

    async def _lookup(self) -> tuple[str, HttpSettings]:
        """Look the connection up (as the triggerer does, without blocking it) and read its settings."""
        from airflow.providers.common.compat.connection import get_async_connection

        conn = await get_async_connection(self.grok_conn_id, hook=self)
        return str(conn.conn_id), self._settings(conn)


def _settle_lookup(
    lookups: dict[Any, tuple[float, Any]], key: Any, shared: tuple[float, Any], task: asyncio.Task[Any]
) -> None:
    """
    Keep a finished lookup's result in place of its task, or forget a lookup that failed.

    :param lookups: the event loop's shared lookups.
    :param key: the lookup's key (connection id and timeouts).
    :param shared: the entry the task was stored in.
    :param task: the finished lookup.
    """
    if lookups.get(key) is not shared:
        return
    if task.cancelled() or task.exception() is not None:
        del lookups[key]
    else:
        lookups[key] = (shared[0], task.result())


def base_url_of(conn: Connection) -> str:
    """
    The API's base URL for a connection: its host, ``https://www.jimmyai.cn`` when empty.

    A host without a scheme gets ``https://`` (the key must not travel in clear text by accident).
    The connection's port goes into the URL's authority, before any path (``gw.example.com/jimmy``
    with port 8443 gives ``https://gw.example.com:8443/jimmy``), unless the host names a port
    itself. A query or fragment is dropped: the API's paths are appended to the base URL.

    :param conn: the Grok video connection.
    :raises GrokVideoAPIError: (not sent) when the host is not a usable URL.
    """
    host = (conn.host or "").strip()
    if not host:
        return DEFAULT_BASE_URL
    parts = urlsplit(host if "://" in host else f"https://{host}")
    try:
        port = parts.port
    except ValueError:
        port, parts = None, parts._replace(netloc="")
    if not parts.hostname:
        raise GrokVideoAPIError(
            f"Connection {conn.conn_id!r}: its host must be a URL such as https://www.jimmyai.cn, "
            "optionally with a port and a path",
            sent=False,
        )
    netloc = parts.netloc if port is not None or not conn.port else f"{parts.netloc}:{conn.port}"
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def _query_path(video_task_id: str) -> str:
    if not isinstance(video_task_id, str) or not video_task_id.strip():
        raise ValueError(f"video_task_id must be a non-empty string, got {video_task_id!r}")
    return QUERY_PATH.format(task_id=quote(video_task_id.strip(), safe=""))
