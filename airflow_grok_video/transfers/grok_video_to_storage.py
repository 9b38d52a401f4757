"""Copy a generated video from its expiring URL to durable storage (any Airflow ObjectStoragePath)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowNotFoundException,
    BaseOperator,
    mask_secret,
)

from airflow_grok_video.exceptions import GrokVideoAPIError
from airflow_grok_video.hooks._envelope import is_transient_status
from airflow_grok_video.hooks.retry import RetryPolicy, parse_retry_after
from airflow_grok_video.validation import is_http_url
from airflow_grok_video.video_task import url_for_logs

if TYPE_CHECKING:
    import requests
    from airflow.providers.common.compat.openlineage.facet import Dataset, RunFacet
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Asset, AssetAlias, Context, ObjectStoragePath, XComArg

#: The asset alias a templated ``dest`` is emitted through.
DEFAULT_ASSET_ALIAS = "grok_video_kept"

_EXPIRED = (403, 404, 410)
# The body must arrive as the bytes Content-Length counts: no gzip, no deflate.
_HEADERS = {"Accept-Encoding": "identity"}
# What a missing value looks like once templated: a pulled XCom that is absent renders as "None".
_MISSING = frozenset({"", "none", "null"})
_MISSING_HINT = (
    "It usually comes from an upstream task's XCom, and that XCom is missing: the upstream task "
    "pushed no URL, or xcom_pull names the wrong task_ids or key (the sensor returns the URL; the "
    "create operator with wait_for_completion=True pushes it under the key 'video_url')."
)


class GrokVideoToStorageOperator(BaseOperator):
    """
    Stream a video from its URL to ``dest`` and return the destination URI.

    The API's ``video_url`` lives 3 days; this keeps the video. The download is streamed in
    chunks (constant memory whatever the size) to a temporary name beside ``dest``, and appears
    at ``dest`` only once complete: of exactly its ``Content-Length``, or ended by chunked
    encoding's last chunk (a body that only the closing of the connection ends, which a cut
    could not be told from, is refused without retries); an interrupted download leaves nothing
    at ``dest``. The download goes through the proxy and CA bundle of the ``grok_conn_id``
    connection (its ``proxies``, ``verify`` and ``trust_env`` extras, as the API's calls do; the
    environment's when that connection does not exist), never with its key, headers or client
    certificate. Transient failures (network errors,
    timeouts, HTTP 408/429/5xx, a short body) restart the download, with backoff. HTTP
    403/404/410 means the link has probably expired: the task fails without retries, as it does
    when ``video_url`` is missing (e.g. ``"None"``, a missing XCom) or not an http(s) URL.

    When ``dest`` already exists (a cleared or re-run task) and ``overwrite`` is false, the object
    at ``dest`` is compared with the video byte for byte, as the video streams in (nothing is
    written): if they are the same, the task succeeds without copying it again; at the first
    difference (or a ``Content-Length`` other than its size, read from the headers alone) the task
    fails, naming ``overwrite=True``.

    The URL's query string, which may carry a signature, is never logged nor put in an error: it
    is also handed to Airflow's secrets masker.

    **The kept video is an Airflow asset event.** A static ``dest`` is declared as an outlet
    ``Asset`` (a DAG can be scheduled on it); a templated one is emitted through the asset alias
    ``asset_alias`` (schedule on ``AssetAlias(asset_alias)``). The event's ``extra`` says what was
    kept: ``uri``, ``bytes``, ``conn_id`` (the ``dest_conn_id`` to open it with, when given), and,
    given ``purchase`` (the create operator's ``purchase`` XCom),
    ``video_task_id``, ``model``, ``seconds``, ``ratio`` or ``orientation``, ``prompt`` and
    ``prompt_sha256``, and ``source_url_expires_at`` (when the video's URL stops working, from the
    API's ``completed_at``).

    **OpenLineage** (with the ``openlineage`` extra): the task's events report the video as input
    (its URL without the query string; with ``purchase``, also the API's video task, the create
    operator's output), the object at ``dest`` as output, and, with ``purchase``, the
    ``grokVideoGeneration`` run facet. See "Lineage (OpenLineage)" in the docs.

    :param video_url: the video's URL (templated), usually the sensor's XCom
        ``"{{ ti.xcom_pull(task_ids='wait_for_video') }}"`` or ``create.output["video_url"]``.
    :param dest: where to store it (templated): any ``ObjectStoragePath`` URI, e.g.
        ``"file:///data/videos/{{ run_id }}/{{ ti.map_index }}.mp4"`` or ``"s3://bucket/videos/x.mp4"``.
    :param dest_conn_id: the Airflow connection for ``dest``'s storage (e.g. an ``aws`` connection).
    :param overwrite: replace whatever is at ``dest``, without comparing it; otherwise an existing
        ``dest`` is kept, and the task fails unless it already holds the video.
    :param chunk_size: bytes read and written at a time.
    :param timeout: seconds to wait for a connection, and between two received chunks.
    :param download_attempts: downloads tried at most, the first one included.
    :param purchase: what the create operator bought, its ``purchase`` XCom (templated), usually
        ``create.output["purchase"]``: its fields go into the asset event's ``extra``.
    :param asset_alias: the asset alias a templated ``dest`` is emitted through.
    :param grok_conn_id: the connection whose proxy and CA bundle the download goes through, and,
        with ``purchase``, the one the video's ``completed_at`` is read through.
    """

    template_fields: Sequence[str] = ("video_url", "dest", "purchase")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        video_url: str | XComArg,
        dest: str,
        dest_conn_id: str | None = None,
        overwrite: bool = False,
        chunk_size: int = 1024 * 1024,
        timeout: float = 60.0,
        download_attempts: int = 4,
        purchase: dict[str, Any] | XComArg | None = None,
        asset_alias: str = DEFAULT_ASSET_ALIAS,
        grok_conn_id: str = "grok_video_default",
        **kwargs: Any,
    ) -> None:
        outlet = _outlet(dest, asset_alias)
        kwargs["outlets"] = [*(kwargs.get("outlets") or []), outlet]
        super().__init__(**kwargs)
        self.video_url = cast("str", video_url)  # an XComArg is resolved before execute
        self.purchase = cast("dict[str, Any] | None", purchase)
        self.asset_alias = asset_alias
        self.grok_conn_id = grok_conn_id
        self._outlet = outlet
        self.dest = dest
        self.dest_conn_id = dest_conn_id
        self.overwrite = overwrite
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.download_attempts = download_attempts
        # What this try read and wrote, for OpenLineage: the checked URL, the purchase, the stored URI.
        self._source: str | None = None
        self._about: dict[str, Any] = {}
        self._stored: str | None = None

    def execute(self, context: Context) -> str:
        """
        Download the video to ``dest`` and return its URI.

        :param context: the task's Airflow context (unused).
        """
        from airflow.sdk import ObjectStoragePath

        url = _checked_video_url(self.video_url)
        _mask_query(url)
        self._source = url
        about = self._about = self._about_the_video()
        dest = ObjectStoragePath(self.dest, conn_id=self.dest_conn_id)
        existing = not self.overwrite and dest.exists()
        started = time.monotonic()
        with self._download_session(url) as session:
            size = self._download_with_retries(session, url, dest, existing=existing)
        if size is not None:
            seconds = max(time.monotonic() - started, 1e-9)
            self.log.info(
                "Stored %d bytes of %s at %s (%.1f MB/s)", size, url_for_logs(url), dest, size / seconds / 1e6
            )
        self._emit_asset_event(context, dest, about)
        self._stored = str(dest)
        return str(dest)

    def get_openlineage_facets_on_complete(self, task_instance: object) -> OperatorLineage[Dataset, RunFacet]:
        """
        For OpenLineage's COMPLETE (and FAIL) event: the video read, the object stored, what the video is.

        Inputs: the video at ``video_url``, as ``scheme://host[:port]`` and path (never its query
        string, which may carry a signature); with ``purchase``, also the API's video task, named
        as the create operator names its output. Output: the object at ``dest``, as OpenLineage
        names the Airflow asset of the same URI (none when the task failed before storing it).
        The ``grokVideoGeneration`` facet comes from ``purchase``.

        :param task_instance: the task instance that ran (unused).
        """
        from airflow_grok_video.lineage import (
            generation_facet,
            lineage,
            stored_dataset,
            url_dataset,
            video_task_dataset,
        )

        inputs = [url_dataset(self._source)] if self._source else []
        video_task_id = self._about.get("video_task_id")
        if video_task_id:
            from airflow_grok_video.hooks.grok_video import GrokVideoHook

            base_url = GrokVideoHook(self.grok_conn_id).base_url
            inputs.append(video_task_dataset(base_url, str(video_task_id)))
        outputs = [stored_dataset(self._stored)] if self._stored else []
        return lineage(inputs, outputs, generation_facet(self._about))

    def _emit_asset_event(self, context: Context, dest: ObjectStoragePath, about: dict[str, Any]) -> None:
        """Tell Airflow the object at ``dest`` was written, with what it holds in the event's ``extra``."""
        from airflow.sdk import Asset, AssetAlias

        extra = {"uri": str(dest), "bytes": int(dest.stat().st_size), **about}
        if self.dest_conn_id:  # a connection id, not a secret: what a reader opens the copy with
            extra["conn_id"] = self.dest_conn_id
        events = context["outlet_events"]
        if isinstance(self._outlet, AssetAlias):
            events[self._outlet].add(Asset(str(dest)), extra=extra)
        else:
            events[self._outlet].extra.update(extra)
        self.log.info("Asset event for %s (video task %s)", dest, extra.get("video_task_id", "unknown"))

    def _about_the_video(self) -> dict[str, Any]:
        """The purchase's fields, and when the video's URL expires (one query), for the event's extra."""
        if self.purchase is None:
            return {}
        if not isinstance(self.purchase, dict):
            raise AirflowFailException(
                f"purchase must be the create operator's 'purchase' XCom (a dict), not a "
                f"{type(self.purchase).__name__} (a template renders text: pass create.output['purchase'])"
            )
        about = {
            k: v for k, v in self.purchase.items() if k not in ("reattached", "estimated_cost", "currency")
        }
        video_task_id = about.get("video_task_id")
        if video_task_id:
            from airflow_grok_video.hooks.grok_video import GrokVideoHook

            task = GrokVideoHook(self.grok_conn_id).get_video_task(str(video_task_id))
            expires = task.url_expires_at()
            if expires is not None:
                about["source_url_expires_at"] = expires.isoformat()
        return about

    def _download_session(self, url: str) -> requests.Session:
        """
        A ``requests`` session with the proxy and CA bundle of ``grok_conn_id`` for ``url``.

        Only the connection's extras are read (its key is not): the same reading as the API's calls,
        in :func:`~airflow_grok_video.hooks._settings.resolve_download_settings`. The session reads
        nothing from the environment itself. A setting that cannot be used fails without retries.

        :param url: the video's URL.
        """
        import requests

        from airflow_grok_video.hooks._settings import resolve_download_settings
        from airflow_grok_video.hooks.grok_video import GrokVideoHook

        try:
            extras = GrokVideoHook.get_connection(self.grok_conn_id).extra_dejson
        except AirflowNotFoundException:
            self.log.info(
                "Connection %r not found: the download uses the environment's proxy and CA bundle",
                self.grok_conn_id,
            )
            extras = {}
        try:
            settings = resolve_download_settings(self.grok_conn_id, extras, url)
        except GrokVideoAPIError as error:
            raise AirflowFailException(f"download of {url_for_logs(url)}: {error}") from None
        session = requests.Session()
        session.trust_env = False
        if settings.proxy is not None:
            session.proxies = {"http": settings.proxy, "https": settings.proxy}
        session.verify = settings.verify
        return session

    def _download_with_retries(
        self, session: requests.Session, url: str, dest: ObjectStoragePath, *, existing: bool
    ) -> int | None:
        policy = RetryPolicy(max_attempts=self.download_attempts)
        for attempt in policy.attempts(creates=False, log=self.log):
            time.sleep(attempt.wait)
            try:
                return self._download(session, url, dest, existing=existing)
            except GrokVideoAPIError as error:
                attempt.failed(error)
        raise AssertionError("unreachable: attempts() ends by raising")

    def _download(
        self, session: requests.Session, url: str, dest: ObjectStoragePath, *, existing: bool
    ) -> int | None:
        """
        One download attempt: the bytes stored, or ``None`` when ``dest`` already held the video.

        :param session: the session with the connection's proxy and CA bundle.
        :param url: the video's URL.
        :param dest: where to store it.
        :param existing: whether ``dest`` exists and must be kept: then it is compared, not written.
        """
        import requests

        partial = dest.parent / f".{dest.name}.part-{uuid.uuid4().hex}"
        try:
            with session.get(url, stream=True, timeout=self.timeout, headers=_HEADERS) as response:
                self._check(response, url, dest if existing else None)
                _check_framing(response, url)
                if existing:
                    self._confirm_existing(response, url, dest)
                    return None  # closing drops the connection if the body was not read to its end
                dest.parent.mkdir(parents=True, exist_ok=True)
                size, received = self._write(response, partial)
            _check_received(response, url, received)
            partial.rename(dest)
            return size
        except requests.RequestException as exc:
            failure = type(exc).__name__
        finally:
            if partial.exists():
                partial.unlink()
        # Raised outside the handler, so that the requests exception, whose text holds the whole URL
        # (its signed query included), is neither the cause nor the context of this one.
        raise GrokVideoAPIError(f"download of {url_for_logs(url)} failed ({failure})", transient=True)

    def _check(self, response: requests.Response, url: str, existing: ObjectStoragePath | None) -> None:
        """
        Fail on an error status: at once when a retry cannot help, retryably when it may.

        :param response: the download's response, headers read.
        :param url: the video's URL.
        :param existing: ``dest`` when it exists and must be kept, else ``None``.
        """
        status = response.status_code
        shown = url_for_logs(url)
        if status in _EXPIRED:
            kept = ""
            if existing is not None:
                kept = (
                    f" {existing} already exists, but whether it is this video cannot be checked any more:"
                    " if it is, mark this task successful."
                )
            raise AirflowFailException(
                f"download of {shown}: HTTP {status}; the link has probably expired (the API's video URLs "
                f"live 3 days). Generate the video again, and store it sooner.{kept}"
            )
        if is_transient_status(status):
            raise GrokVideoAPIError(
                f"download of {shown}: HTTP {status}",
                http_status=status,
                transient=True,
                retry_after=parse_retry_after(response.headers.get("Retry-After")),
            )
        if status >= 400:
            raise AirflowFailException(f"download of {shown}: HTTP {status}")

    def _confirm_existing(self, response: requests.Response, url: str, dest: ObjectStoragePath) -> None:
        """
        Return when ``dest`` holds the video byte for byte, else fail naming ``overwrite=True``.

        A ``Content-Length`` other than the object's size fails from the headers alone; otherwise
        the video is read and compared as it streams in, up to the first difference.

        :param response: the download's response, headers read and body unread.
        :param url: the video's URL.
        :param dest: the existing object.
        """
        length = _plain_length(response)
        held = dest.stat().st_size
        if length is not None and held != length:
            raise AirflowFailException(
                f"{dest} already exists and is not this video ({held} bytes; the video has {length}); "
                "set overwrite=True to replace it"
            )
        differs_at = self._first_difference(response, dest)
        if differs_at is not None:
            raise AirflowFailException(
                f"{dest} already exists and is not this video (its bytes differ from byte {differs_at:,}); "
                "set overwrite=True to replace it"
            )
        _check_received(response, url, int(response.raw.tell()))
        self.log.info(
            "%s already holds the video (%d bytes, the same as %s byte for byte): not copying it again",
            dest,
            held,
            url_for_logs(url),
        )

    def _first_difference(self, response: requests.Response, dest: ObjectStoragePath) -> int | None:
        """
        Where the video's bytes first differ from the object's, or ``None`` when they are the same.

        :param response: the download's response, headers read and body unread.
        :param dest: the existing object.
        """
        offset = 0
        with dest.open("rb") as held:
            for chunk in response.iter_content(chunk_size=self.chunk_size):
                theirs = _read_exactly(held, len(chunk))
                if theirs != chunk:
                    return offset + next(
                        (i for i, (a, b) in enumerate(zip(theirs, chunk, strict=False)) if a != b),
                        min(len(theirs), len(chunk)),
                    )
                offset += len(chunk)
            if held.read(1):
                return offset  # the object is longer than the video
        return None

    def _write(self, response: requests.Response, partial: ObjectStoragePath) -> tuple[int, int]:
        """
        Stream the body to ``partial``: the bytes written, and the bytes received as sent (encoded).

        :param response: the download's response, headers read.
        :param partial: the temporary object written.
        """
        size = 0
        with partial.open("wb") as out:
            for chunk in response.iter_content(chunk_size=self.chunk_size):
                out.write(chunk)
                size += len(chunk)
        return size, int(response.raw.tell())


def _outlet(dest: Any, asset_alias: str) -> Asset | AssetAlias:
    """
    The outlet a kept video is declared by: ``dest`` as an ``Asset`` when it is known now, else the alias.

    :param dest: the ``dest`` argument, before templating.
    :param asset_alias: the alias for a ``dest`` known only at run time.
    """
    from airflow.sdk import Asset, AssetAlias

    if isinstance(dest, str) and "{{" not in dest and "{%" not in dest:
        return Asset(dest)
    return AssetAlias(asset_alias)


def _checked_video_url(value: object) -> str:
    """
    The video URL, stripped; fails without retries when it is missing or not an http(s) URL.

    :param value: the rendered ``video_url``.
    """
    text = "" if value is None else str(value).strip()
    if text.lower() in _MISSING:
        raise AirflowFailException(f"video_url is missing (got {value!r}). {_MISSING_HINT}")
    if not is_http_url(text):
        shown = text.split("?", 1)[0][:200]
        raise AirflowFailException(f"video_url is not an http(s) URL: {shown!r}. {_MISSING_HINT}")
    return text


def _mask_query(url: str) -> None:
    """
    Have Airflow's secrets masker hide the URL's query string in every log line, whoever logs it.

    :param url: the video's URL.
    """
    query = urlsplit(url).query
    if query:
        mask_secret(query)


def _check_framing(response: requests.Response, url: str) -> None:
    """
    Fail without retries when the body's end cannot be known: no ``Content-Length``, no chunked encoding.

    Such a body ends when the server closes the connection, and a connection cut short closes the
    same way: a partial video would pass for a whole one.

    :param response: the download's response, headers read.
    :param url: the video's URL.
    """
    chunked = "chunked" in response.headers.get("Transfer-Encoding", "").lower()
    if _content_length(response) is None and not chunked:
        raise AirflowFailException(
            f"download of {url_for_logs(url)}: the server sent neither a Content-Length nor a chunked "
            "body, so a download cut short could not be told from the whole video; nothing was stored"
        )


def _check_received(response: requests.Response, url: str, received: int) -> None:
    """
    Fail retryably when fewer bytes arrived than the ``Content-Length`` announced.

    :param response: the download's response, its body read.
    :param url: the video's URL.
    :param received: the bytes received as sent (encoded).
    """
    expected = _content_length(response)
    if expected is not None and received != expected:
        raise GrokVideoAPIError(
            f"download of {url_for_logs(url)}: got {received} of {expected} bytes", transient=True
        )


def _read_exactly(stream: Any, size: int) -> bytes:
    """
    ``size`` bytes from ``stream``, fewer only at its end (a read may return less than asked).

    :param stream: a binary file opened for reading.
    :param size: how many bytes to read.
    """
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _content_length(response: requests.Response) -> int | None:
    """
    The ``Content-Length`` header as a number, ``None`` when absent or unreadable.

    :param response: a response, headers read.
    """
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _plain_length(response: requests.Response) -> int | None:
    """
    The ``Content-Length`` when it counts the video's own bytes (the body is not encoded).

    :param response: a response, headers read.
    """
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    return _content_length(response) if encoding in ("", "identity") else None
