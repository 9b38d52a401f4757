"""
The Videos plugin: a page in Airflow's UI (3.1+) listing every video bought, with a player and spend.

Registered through the ``airflow.plugins`` entry point. Every Airflow component imports this module
when it loads plugins; only the api-server reads :attr:`GrokVideoPlugin.fastapi_apps`, and only then
is the app (FastAPI, the metadata queries) imported and built.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/grok_video"
_ICON = (
    "data:image/svg+xml;utf8,<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 24 24' fill='none' "
    "stroke='%23888' stroke-width='2'><rect x='2' y='5' width='15' height='14' rx='2'/>"
    "<path d='M17 10l5-3v10l-5-3z'/></svg>"
)


class GrokVideoPlugin(AirflowPlugin):
    """
    The Videos page, and the Video tabs of task instances and DAG runs.

    Adds **Videos** to the UI's navigation, a **Video** tab to every task instance and a **Videos**
    tab to every DAG run (a task that bought, waited for or kept no video says so), served by a
    FastAPI app on the api-server under ``/grok_video``.
    """

    name = "grok_video"
    # Hrefs without a leading slash: the UI resolves them against its own base URL.
    external_views = [
        {
            "name": "Videos",
            "href": "grok_video/videos",
            "destination": "nav",
            "url_route": "grok-videos",
            "icon": _ICON,
        },
        {
            "name": "Video",
            "href": "grok_video/task/{DAG_ID}/{RUN_ID}/{TASK_ID}/{MAP_INDEX}",
            "destination": "task_instance",
            "url_route": "grok-video",
            "icon": _ICON,
        },
        {
            "name": "Videos",
            "href": "grok_video/run/{DAG_ID}/{RUN_ID}",
            "destination": "dag_run",
            "url_route": "grok-videos-run",
            "icon": _ICON,
        },
    ]

    @cached_property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The plugin's app, built when the api-server first asks for it."""
        from airflow_grok_video.plugins.app import create_app

        return [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "Grok Video: Videos"}]
