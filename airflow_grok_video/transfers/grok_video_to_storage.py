"""Copy a generated video from its expiring URL to durable storage (any Airflow ObjectStoragePath)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException, BaseOperator

from airflow_grok_video.exceptions import GrokVideoAPIError
from airflow_grok_video.hooks._retry import RetryPolicy

if TYPE_CHECKING:
    import requests
    from airflow.sdk import Context, ObjectStoragePath

_EXPIRED = (403, 404, 410)


class GrokVideoToStorageOperator(BaseOperator):
    """
    Stream a video from its URL to ``dest`` and return the destination URI.

    The API's ``video_url`` lives 3 days; this keeps the video. The download is streamed in
    chunks (constant memory whatever the size) to a temporary name beside ``dest``, and appears
    at ``dest`` only once complete and, when the server sent a ``Content-Length``, of exactly that
    size; an interrupted download leaves nothing at ``dest``. Transient failures (network errors,
    timeouts, HTTP 408/429/5xx, a short body) restart the download, with backoff. HTTP
    403/404/410 means the link has probably expired: the task fails without retries.

    :param video_url: the video's URL (templated), usually the sensor's XCom
        ``"{{ ti.xcom_pull(task_ids='wait_for_video') }}"`` or ``create.output["video_url"]``.
    :param dest: where to store it (templated): any ``ObjectStoragePath`` URI, e.g.
        ``"file:///data/videos/{{ run_id }}/{{ ti.map_index }}.mp4"`` or ``"s3://bucket/videos/x.mp4"``.
    :param dest_conn_id: the Airflow connection for ``dest``'s storage (e.g. an ``aws`` connection).
    :param overwrite: replace an existing ``dest``; otherwise an existing ``dest`` fails the task
        before anything is downloaded.
    :param chunk_size: bytes read and written at a time.
    :param timeout: seconds to wait for a connection, and between two received chunks.
    :param download_attempts: downloads tried at most, the first one included.
    """

    template_fields: Sequence[str] = ("video_url", "dest")
    ui_color = "#e6f4ea"

    def __init__(
        self,
        *,
        video_url: str,
        dest: str,
        dest_conn_id: str | None = None,
        overwrite: bool = False,
        chunk_size: int = 1024 * 1024,
        timeout: float = 60.0,
        download_attempts: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.video_url = video_url
        self.dest = dest
        self.dest_conn_id = dest_conn_id
        self.overwrite = overwrite
        self.chunk_size = chunk_size
        self.timeout = timeout
        self.download_attempts = download_attempts

    def execute(self, context: Context) -> str:
        """Download the video to ``dest`` and return its URI."""
        from airflow.sdk import ObjectStoragePath

        dest = ObjectStoragePath(self.dest, conn_id=self.dest_conn_id)
        if dest.exists() and not self.overwrite:
            raise AirflowFailException(f"{dest} already exists; set overwrite=True to replace it")
        policy = RetryPolicy(max_attempts=self.download_attempts)
        attempt = 1
        started = time.monotonic()
        while True:
            try:
                size = self._download(dest)
                break
            except GrokVideoAPIError as error:
                wait = policy.delay(error, attempt, creates=False)
                if wait is None:
                    raise AirflowException(f"{error} (gave up after {attempt} attempts)") from error
                self.log.warning("%s; downloading again in %.1fs", error, wait)
            time.sleep(wait)
            attempt += 1
        seconds = max(time.monotonic() - started, 1e-9)
        self.log.info("Stored %d bytes at %s (%.1f MB/s)", size, dest, size / seconds / 1e6)
        return str(dest)

    def _download(self, dest: ObjectStoragePath) -> int:
        import requests

        partial = dest.parent / f".{dest.name}.part-{uuid.uuid4().hex}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with requests.get(self.video_url, stream=True, timeout=self.timeout) as response:
                self._check(response)
                expected = response.headers.get("Content-Length")
                size = self._write(response, partial)
            if expected is not None and size != int(expected):
                raise GrokVideoAPIError(
                    f"download of {_shown(self.video_url)}: got {size} of {expected} bytes", transient=True
                )
            partial.rename(dest)
            return size
        except requests.RequestException as exc:
            raise GrokVideoAPIError(
                f"download of {_shown(self.video_url)} failed ({type(exc).__name__})", transient=True
            ) from exc
        finally:
            if partial.exists():
                partial.unlink()

    def _check(self, response: requests.Response) -> None:
        status = response.status_code
        shown = _shown(self.video_url)
        if status in _EXPIRED:
            raise AirflowFailException(
                f"download of {shown}: HTTP {status}; the link has probably expired (the API's video URLs "
                "live 3 days). Generate the video again, and store it sooner."
            )
        if status == 408 or status == 429 or status >= 500:
            raise GrokVideoAPIError(f"download of {shown}: HTTP {status}", http_status=status, transient=True)
        if status >= 400:
            raise AirflowFailException(f"download of {shown}: HTTP {status}")

    def _write(self, response: requests.Response, partial: ObjectStoragePath) -> int:
        size = 0
        with partial.open("wb") as out:
            for chunk in response.iter_content(chunk_size=self.chunk_size):
                out.write(chunk)
                size += len(chunk)
        return size


def _shown(url: str) -> str:
    """The URL without its query string, which may carry a signature."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"
