"""The operator that creates a Grok 1.5 video task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import BaseOperator

from airflow_grok_video.hooks._params import MODEL
from airflow_grok_video.hooks.grok_video import GrokVideoHook

if TYPE_CHECKING:
    from airflow.sdk import Context


class GrokCreateVideoOperator(BaseOperator):
    """
    Create one Grok 1.5 video task and return the API's task id (XCom ``return_value``).

    Every parameter is checked against the API's rules after templating and before any request
    is sent: a bad value fails the task at once, naming the field, the value and what is
    allowed, and nothing is billed. The create is sent again only when the server cannot have
    accepted it; when a video may have been created but its id is unknown, the task fails
    without retries rather than paying twice.

    Wait for the video with :class:`~airflow_grok_video.sensors.grok_video.GrokVideoSensor`.

    :param prompt: the text prompt (templated); must contain more than whitespace.
    :param image_url: the reference image URL, http(s) (templated).
    :param image_urls: a list holding the reference image URL (templated); with ``image_url``,
        exactly one URL in total is required.
    :param duration: 10 or 15 seconds of video (templated).
    :param ratio: ``16:9``, ``9:16``, ``1:1``, ``3:2`` or ``2:3`` (templated); the API's default is 16:9.
    :param orientation: ``landscape`` (16:9) or ``portrait`` (9:16) (templated); not with ``ratio``.
    :param model: ``grok-imagine-video-1.5``, or its aliases ``grok-1.5`` and ``grok_1_5`` (templated).
    :param grok_conn_id: the Airflow connection id.
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
    ui_color = "#d2e3fc"

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
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.image_url = image_url
        self.image_urls = image_urls
        self.duration = duration
        self.ratio = ratio
        self.orientation = orientation
        self.model = model
        self.grok_conn_id = grok_conn_id

    def execute(self, context: Context) -> str:
        """Validate the parameters, create the video task and return its id."""
        data = GrokVideoHook(self.grok_conn_id).create_video(
            prompt=self.prompt,
            image_url=self.image_url,
            image_urls=self.image_urls,
            duration=self.duration,
            ratio=self.ratio,
            orientation=self.orientation,
            model=self.model,
        )
        task_id = str(data["task_id"])
        self.log.info(
            "Created Grok video task %s (model %s, %s s, status %s)",
            task_id,
            data.get("model", self.model),
            self.duration,
            data.get("status"),
        )
        return task_id
