"""Run whenever a video is kept: read what it is from the asset event the keep task emitted.

``GrokVideoToStorageOperator`` emits an asset event for each video it stores: through the asset alias
``grok_video_kept`` when its ``dest`` is templated (as in ``grok_video_keep.py``), or for the
``Asset`` of a fixed ``dest``. Its extra says what the video is: ``uri``, ``bytes``,
``video_task_id``, ``model``, ``seconds``, ``ratio``, ``prompt``, ``prompt_sha256`` and
``source_url_expires_at``. This DAG buys nothing.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import AssetAlias, dag, task

from airflow_grok_video.transfers.grok_video_to_storage import DEFAULT_ASSET_ALIAS


@dag(
    schedule=[AssetAlias(DEFAULT_ASSET_ALIAS)],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["grok-video", "example"],
)
def grok_video_on_kept() -> None:
    @task
    def describe(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        # An event comes under the alias and under the asset it was emitted for: keep each once.
        kept = {
            (event.asset.uri, str(event.timestamp)): dict(event.extra)
            for events in (triggering_asset_events or {}).values()
            for event in events
        }
        for video in kept.values():
            print(f"Kept {video['uri']}: {video['bytes']} bytes, video task {video.get('video_task_id')}")
        return list(kept.values())

    describe()


grok_video_on_kept()
