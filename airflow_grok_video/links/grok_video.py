"""The "Grok Video" button on a task instance, opening the video that task produced."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from airflow.providers.common.compat.sdk import BaseOperatorLink, XCom

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: The XCom key under which the sensor and the waiting create operator push the video URL.
VIDEO_URL_XCOM_KEY = "video_url"

#: What a finished wait pushes under an XCom key: the video's URL or its id.
SuccessValue = Literal["video_url", "video_task_id"]


def success_xcoms(
    task: BaseOperator | type[BaseOperator], return_value: SuccessValue
) -> dict[str, SuccessValue]:
    """
    The XComs a task pushes when its video is done: ``return_value``, the URL, and its extra links'.

    :param task: the sensor or the waiting create operator (or its class, for a mapped one).
    :param return_value: what the task returns: the ``video_url`` or the ``video_task_id``.
    """
    xcoms: dict[str, SuccessValue] = {"return_value": return_value, VIDEO_URL_XCOM_KEY: "video_url"}
    xcoms.update({link.xcom_key: "video_url" for link in task.operator_extra_links})
    return xcoms


class GrokVideoLink(BaseOperatorLink):
    """Open the task instance's video: the URL it pushed under the XCom key ``video_url``."""

    name = "Grok Video"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        """
        Return the video URL of that task instance, or ``""`` while it has none.

        :param operator: the create operator or the sensor.
        :param ti_key: the task instance.
        """
        return str(XCom.get_value(key=VIDEO_URL_XCOM_KEY, ti_key=ti_key) or "")
