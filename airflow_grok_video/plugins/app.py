"""
The Videos plugin's FastAPI app, mounted on Airflow's api-server under ``/grok_video``.

Every route needs a signed-in user (Airflow's own JWT: the UI's cookie, or a Bearer token) and shows
only the DAGs that user may read, as the configured auth manager decides. The API key is never read
here; a video's signed URL is sent only inside a row of a DAG the user may read.
"""

from __future__ import annotations

import html
from datetime import date
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from airflow.api_fastapi.common.db.common import SessionDep
from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, StreamingResponse

from airflow_grok_video.plugins import media
from airflow_grok_video.plugins.videos import STATES, Filters, TaskRef, Video, bought, resolve, spend

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


def readable_dags(user: GetUserDep) -> set[str]:
    """The DAG ids the signed-in user may read (401 without a user, from ``GetUserDep``)."""
    from airflow.api_fastapi.app import get_auth_manager

    return set(get_auth_manager().get_authorized_dag_ids(user=user, method="GET"))


ReadableDags = Annotated[set[str], Depends(readable_dags)]


def _filters(
    dag_id: str | None = None,
    run_id: str | None = None,
    state: str | None = None,
    since: date | None = None,
    until: date | None = None,
) -> Filters:
    if state is not None and state not in STATES:
        raise HTTPException(422, f"state must be one of {', '.join(STATES)}, not {state!r}")
    return Filters(dag_id=dag_id or None, run_id=run_id or None, since=since, until=until, state=state)


FiltersDep = Annotated[Filters, Depends(_filters)]


def create_app() -> FastAPI:
    """Build the plugin's app (its routes are documented in docs/videos-ui.md)."""
    app = FastAPI(title="Grok Video: Videos", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/videos", response_class=HTMLResponse)
    def videos_page(request: Request, dags: ReadableDags) -> HTMLResponse:
        """The Videos page (its data comes from ``/api/videos``)."""
        return _page(request, mode="list")

    @app.get("/task/{dag_id}/{run_id}/{task_id}/{map_index}", response_class=HTMLResponse)
    def task_page(
        request: Request, dags: ReadableDags, dag_id: str, run_id: str, task_id: str, map_index: str
    ) -> HTMLResponse:
        """The player of one task instance's video (the task instance tab)."""
        _require(dag_id, dags)
        return _page(
            request,
            mode="task",
            dag_id=dag_id,
            run_id=run_id,
            task_id=task_id,
            map_index=str(_map_index(map_index)),
        )

    @app.get("/run/{dag_id}/{run_id}", response_class=HTMLResponse)
    def run_page(request: Request, dags: ReadableDags, dag_id: str, run_id: str) -> HTMLResponse:
        """The videos of one DAG run (the DAG run tab)."""
        _require(dag_id, dags)
        return _page(request, mode="run", dag_id=dag_id, run_id=run_id)

    @app.get("/api/videos")
    def list_videos(
        session: SessionDep,
        dags: ReadableDags,
        filters: FiltersDep,
        task_id: str | None = None,
        map_index: str | None = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = PAGE_SIZE,
    ) -> dict[str, Any]:
        """One page of videos, newest first, with the spend of every video the filters keep."""
        videos = _selected(session, dags, filters)
        if task_id is not None:
            ti = TaskRef(filters.dag_id or "", filters.run_id or "", task_id, _map_index(map_index))
            videos = [v for v in resolve(session, videos) if v.touches(ti)]
        page = videos[offset : offset + limit]
        if filters.state is None and task_id is None:
            resolve(session, page)
        return {
            "total": len(videos),
            "offset": offset,
            "limit": limit,
            "videos": [video.public() for video in page],
            "spend": spend(videos),
        }

    @app.get("/api/caps")
    def spend_caps(session: SessionDep, user: GetUserDep) -> dict[str, Any]:
        """Use against each capped connection's caps, for users who may read connections."""
        from datetime import datetime, timezone

        from airflow.api_fastapi.app import get_auth_manager

        from airflow_grok_video.plugins.caps import cap_usage, grok_connections

        # A cap counts every DAG's videos: only a user who may read connections sees it.
        if not get_auth_manager().is_authorized_connection(method="GET", user=user):
            raise HTTPException(403, "you may not read connections")
        return {"caps": cap_usage(grok_connections(session), datetime.now(timezone.utc))}

    @app.get("/media/{dag_id}/{run_id}/{task_id}/{map_index}/{video_task_id}")
    def kept_copy(
        request: Request,
        session: SessionDep,
        dags: ReadableDags,
        dag_id: str,
        run_id: str,
        task_id: str,
        map_index: int,
        video_task_id: str,
    ) -> StreamingResponse:
        """A kept video's bytes, answering ``Range`` requests (206) so that seeking works."""
        _require(dag_id, dags)
        found = [
            v
            for v in resolve(session, bought(session, {dag_id}, Filters(dag_id=dag_id, run_id=run_id)))
            if v.video_task_id == video_task_id and v.bought_by == TaskRef(dag_id, run_id, task_id, map_index)
        ]
        if not found or found[0].kept_uri is None:
            raise HTTPException(404, "no kept copy of this video")
        return _stream(request, found[0])

    return app


def _selected(session: Session, dags: set[str], filters: Filters) -> list[Video]:
    videos = bought(session, dags, filters)
    if filters.state is not None:
        videos = [v for v in resolve(session, videos) if v.state == filters.state]
    return videos


def _stream(request: Request, video: Video) -> StreamingResponse:
    path = media.open_kept(str(video.kept_uri), video.kept_conn_id)
    try:
        size = int(path.stat().st_size)
    except FileNotFoundError:
        raise HTTPException(404, "the kept copy is no longer there") from None
    try:
        part = media.parse_range(request.headers.get("range"), size)
    except media.UnsatisfiableRange:
        raise HTTPException(
            416, "range not satisfiable", headers={"Content-Range": f"bytes */{size}"}
        ) from None
    whole = part or media.ByteRange(0, size - 1, size)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(whole.length), "Cache-Control": "private"}
    if part is not None:
        headers["Content-Range"] = part.content_range()
    return StreamingResponse(
        media.read_range(path, whole),
        status_code=206 if part else 200,
        media_type="video/mp4",
        headers=headers,
    )


def _require(dag_id: str, dags: set[str]) -> None:
    """403 unless the user may read the DAG (the same answer whether or not it exists)."""
    if dag_id not in dags:
        raise HTTPException(403, "you may not read this DAG")


def _map_index(value: str | None) -> int:
    """A map index from a URL: an unmapped task's tab leaves the ``{MAP_INDEX}`` placeholder."""
    try:
        return int(value) if value is not None else -1
    except ValueError:
        return -1


def _page(request: Request, *, mode: str, **ids: str) -> HTMLResponse:
    """The page's HTML: the same shell for every view; the ids go in as escaped attributes."""
    shell = resources.files("airflow_grok_video.plugins").joinpath("videos.html").read_text()
    attributes = {"mode": mode, "root": request.scope.get("root_path", ""), "ui": _ui_root(), **ids}
    data = " ".join(
        f'data-{k.replace("_", "-")}="{html.escape(v, quote=True)}"' for k, v in attributes.items()
    )
    return HTMLResponse(
        shell.replace("\n<main>", f"\n<main {data}>", 1), headers={"Cache-Control": "no-store"}
    )


def _ui_root() -> str:
    """The path Airflow's UI is served under (``[api] base_url``'s path), for links into it."""
    from urllib.parse import urlparse

    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback="/") or "/"
    return (urlparse(base).path if "://" in base else base).rstrip("/")
