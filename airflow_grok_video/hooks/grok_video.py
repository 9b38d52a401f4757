"""The hook that talks to the Jimmy AI video API (Grok 1.5 video model)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

from airflow.providers.common.compat.sdk import BaseHook

from airflow_grok_video.exceptions import GrokVideoAPIError, GrokVideoAuthError
from airflow_grok_video.get_provider_info import UI_FIELD_BEHAVIOUR
from airflow_grok_video.hooks._api import (
    CREATE_PATH,
    DEFAULT_BASE_URL,
    QUERY_PATH,
    VideoTask,
    require,
    unwrap,
)
from airflow_grok_video.hooks._params import MODEL, build_create_body
from airflow_grok_video.hooks._retry import RetryPolicy, parse_retry_after

if TYPE_CHECKING:
    import requests
    from airflow.sdk import Connection

    from airflow_grok_video.hooks._http import AsyncClient, SyncHttp

__all__ = ["DEFAULT_BASE_URL", "GrokVideoHook", "RetryPolicy", "VideoTask"]


class GrokVideoHook(BaseHook):
    """
    Create Grok 1.5 videos and query their tasks through Jimmy AI's API.

    The connection (type ``grok_video``) holds the API key as its password and the base URL as
    its host (a full URL; empty means ``https://www.jimmyai.cn``). Requests carry the key as a
    Bearer token. Failed queries are retried with backoff (see :class:`RetryPolicy`); a create is
    retried only when the server cannot have accepted it.

    :param grok_conn_id: the Airflow connection id.
    :param connect_timeout: seconds to wait for a connection to the API.
    :param read_timeout: seconds to wait for the API's answer once connected.
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
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__()
        self.grok_conn_id = grok_conn_id
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.retry_policy = retry_policy or RetryPolicy()
        self._sync: tuple[SyncHttp, requests.Session] | None = None
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
    ) -> dict[str, Any]:
        """
        Validate the parameters, then create one (billed) video task.

        Nothing is sent unless every parameter is valid. The request is sent again only when the
        server cannot have accepted it (connection refused, HTTP 429).

        :param prompt: the text prompt.
        :param image_url: the reference image URL (or give ``image_urls``).
        :param image_urls: a list holding the one reference image URL.
        :param duration: 10 or 15 seconds.
        :param ratio: ``16:9``, ``9:16``, ``1:1``, ``3:2`` or ``2:3``.
        :param orientation: ``landscape`` or ``portrait`` (only without ``ratio``).
        :param model: ``grok-imagine-video-1.5`` or an alias of it.
        :return: the API's ``data``: ``task_id``, ``status``, ``model``, ``created_at``.
        :raises GrokVideoValidationError: before any request, for an invalid parameter.
        :raises GrokVideoUncertainCreateError: when a video may have been created but its id is unknown.
        :raises GrokVideoAPIError: for any other API error.
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
        what = "create video"
        data = self._call_sync("POST", CREATE_PATH, body, what=what, creates=True, deadline=None)
        require(data, "task_id", what=what)
        return data

    def get_video_task(self, video_task_id: str, *, deadline: float | None = None) -> dict[str, Any]:
        """
        Query a video task, retrying transient failures.

        :param video_task_id: the API's task id, as returned by :meth:`create_video`.
        :param deadline: Unix time after which no retry is started.
        :return: the API's ``data`` (``status``, ``progress``, ``result.video_url``, ...).
        """
        what = f"query video task {video_task_id}"
        return self._call_sync(
            "GET", _query_path(video_task_id), None, what=what, creates=False, deadline=deadline
        )

    async def aget_video_task(self, video_task_id: str, *, deadline: float | None = None) -> dict[str, Any]:
        """
        Query a video task without blocking the event loop; the async twin of :meth:`get_video_task`.

        The connection is resolved once per hook (through the HTTP provider's ``HttpAsyncHook``, so
        its extras such as proxies apply). The ``aiohttp`` session is shared by every hook on the
        same connection in the same event loop (in a triggerer: every wait on that connection);
        give it back with :meth:`aclose`.

        :param video_task_id: the API's task id.
        :param deadline: Unix time after which no retry is started.
        :return: the API's ``data``.
        """
        what = f"query video task {video_task_id}"
        path = _query_path(video_task_id)
        attempt = 1
        while True:
            try:
                return await self._send_async(path, what)
            except GrokVideoAPIError as error:
                wait = self.retry_policy.delay(error, attempt, creates=False, deadline=deadline)
                if wait is None:
                    raise self.retry_policy.final_error(error, attempt, creates=False) from error
                self._log_retry(error, attempt, wait)
            await asyncio.sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        """Give back the HTTP session the async calls used (shared per connection and event loop)."""
        if self._async is not None:
            client, self._async = self._async, None
            await client.close()

    def test_connection(self) -> tuple[bool, str]:
        """
        Make one cheap authenticated call, telling a refused key from an unreachable API.

        Queries a task id that cannot exist: "not found" proves the key was accepted.
        """
        try:
            self._send_sync("GET", _query_path("airflow-connection-test"), None, "connection test")
        except GrokVideoAuthError as error:
            return False, str(error)
        except GrokVideoAPIError as error:
            if error.code is not None and error.http_status is not None and error.http_status < 500:
                return True, f"The API accepted the key ({error.http_status} for a made-up task id)."
            return False, str(error)
        return True, "The API accepted the key."

    # -- plumbing ------------------------------------------------------------------------

    def _call_sync(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        what: str,
        creates: bool,
        deadline: float | None,
    ) -> dict[str, Any]:
        attempt = 1
        while True:
            try:
                return self._send_sync(method, path, body, what)
            except GrokVideoAPIError as error:
                wait = self.retry_policy.delay(error, attempt, creates=creates, deadline=deadline)
                if wait is None:
                    raise self.retry_policy.final_error(error, attempt, creates=creates) from error
                self._log_retry(error, attempt, wait)
            time.sleep(wait)
            attempt += 1

    def _log_retry(self, error: GrokVideoAPIError, attempt: int, wait: float) -> None:
        self.log.warning(
            "%s; sending it again in %.1fs (attempt %d of %d)",
            error,
            wait,
            attempt + 1,
            self.retry_policy.max_attempts,
        )

    def _send_sync(self, method: str, path: str, body: dict[str, Any] | None, what: str) -> dict[str, Any]:
        import requests

        from airflow_grok_video.hooks._http import requests_error

        http, session = self._sync_client()
        request = session.prepare_request(requests.Request(method, http.url_from_endpoint(path), json=body))
        options = {
            **http.merged_extra,
            "check_response": False,
            "timeout": (self.connect_timeout, self.read_timeout),
        }
        try:
            response = http.run_and_check(session, request, options)
            content = response.content
        except requests.RequestException as exc:
            raise requests_error(exc, what) from exc
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return unwrap(response.status_code, content, what=what, retry_after=retry_after)

    async def _send_async(self, path: str, what: str) -> dict[str, Any]:
        import aiohttp

        from airflow_grok_video.hooks._http import aiohttp_error

        client = await self._async_client()
        try:
            async with client.session.get(client.base_url + path, **client.options) as response:
                content = await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise aiohttp_error(exc, what) from exc
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return unwrap(response.status, content, what=what, retry_after=retry_after)

    def _sync_client(self) -> tuple[SyncHttp, requests.Session]:
        if self._sync is None:
            from airflow_grok_video.hooks._http import SyncHttp, http_connection

            conn = self.get_connection(self.grok_conn_id)
            base_url = base_url_of(conn)
            http = SyncHttp(http_connection(conn, base_url), method="GET")
            self._sync = http, http.get_conn(headers=_auth_header(conn))
        return self._sync

    async def _async_client(self) -> AsyncClient:
        if self._async is None:
            from airflow.providers.common.compat.connection import get_async_connection

            from airflow_grok_video.hooks._http import AsyncClient

            conn = await get_async_connection(self.grok_conn_id, hook=self)
            self._async = await AsyncClient.open(
                conn, base_url_of(conn), _auth_header(conn), self.connect_timeout, self.read_timeout
            )
        return self._async


def base_url_of(conn: Connection) -> str:
    """
    The API's base URL for a connection: its host, ``https://www.jimmyai.cn`` when empty.

    A host without a scheme gets ``https://`` (the key must not travel in clear text by accident).

    :param conn: the Grok video connection.
    """
    host = (conn.host or "").strip().rstrip("/")
    if not host:
        return DEFAULT_BASE_URL
    if "://" not in host:
        host = f"https://{host}"
    if conn.port and urlparse(host).port is None:
        host = f"{host}:{conn.port}"
    return host


def _auth_header(conn: Connection) -> dict[str, str]:
    if not conn.password:
        raise GrokVideoAuthError(
            f"Connection {conn.conn_id!r} has no API key: put the key (sk_...) in its password field"
        )
    return {"Authorization": f"Bearer {conn.password}"}


def _query_path(video_task_id: str) -> str:
    if not isinstance(video_task_id, str) or not video_task_id.strip():
        raise ValueError(f"video_task_id must be a non-empty string, got {video_task_id!r}")
    return QUERY_PATH.format(task_id=quote(video_task_id.strip(), safe=""))
