"""Keeping the video: streamed to any ObjectStoragePath, complete or not at all."""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import threading
import time
import traceback
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException
from airflow.sdk import ObjectStoragePath

from airflow_grok_video.emulator import Fault, GrokVideoEmulator
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.transfers.grok_video_to_storage import GrokVideoToStorageOperator
from tests._net import ForwardProxy, Gateway, make_pki
from tests.conftest import API_KEY, conn_json
from tests.test_dags import run_dag, states, xcom

VIDEOS = "/videos/"
SECRET = "SECRET_sig_9d2f7a41"


def finished_video(emu: GrokVideoEmulator) -> str:
    task_id = GrokVideoHook().create_video(prompt="a fox", image_url="https://example.com/f.png")["task_id"]
    url = f"{emu.base_url}/videos/{task_id}.mp4"
    deadline = time.monotonic() + 10
    while requests.head(url, timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return url


def keep(url: str, dest: str, **kwargs: Any) -> str:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    operator = GrokVideoToStorageOperator(task_id="keep", video_url=url, dest=dest, **kwargs)
    return str(operator.execute({"outlet_events": OutletEventAccessors()}))  # type: ignore[arg-type]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def chain_text(error: BaseException) -> str:
    """Everything an exception and the exceptions it chains say, tracebacks included."""
    texts: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [error]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        texts += [str(current), repr(current), *traceback.format_exception(current)]
        todo += [current.__cause__, current.__context__]
    return "\n".join(texts)


class _TinyServer(ThreadingHTTPServer):
    daemon_threads = True
    body: bytes | None
    headers: dict[str, str]
    seen: list[dict[str, str]]
    release: threading.Event
    stall: bool


class _TinyHandler(BaseHTTPRequestHandler):
    """Answers every GET with the server's headers and body; no body at all (or ``stall``) means: stall."""

    protocol_version = "HTTP/1.1"
    server: _TinyServer

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers))
        self.send_response(200)
        for name, value in self.server.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.server.body is not None:
            self.wfile.write(self.server.body)
            self.wfile.flush()
        if self.server.body is None or self.server.stall:
            self.server.release.wait(30)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def tiny_server() -> Iterator[Callable[..., tuple[str, list[dict[str, str]]]]]:
    """A real HTTP server on 127.0.0.1 answering what the test says, whatever the request asks."""
    servers: list[_TinyServer] = []

    def serve(
        body: bytes | None, headers: dict[str, str], *, stall: bool = False
    ) -> tuple[str, list[dict[str, str]]]:
        """Serve ``body`` with ``headers`` (then stall with ``stall``); the URL, each request's headers."""
        server = _TinyServer(("127.0.0.1", 0), _TinyHandler)
        server.body, server.headers, server.seen, server.release = body, headers, [], threading.Event()
        server.stall = stall
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/videos/v.mp4", server.seen

    yield serve
    for server in servers:
        server.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def fast_emulator(monkeypatch: pytest.MonkeyPatch) -> Any:
    with GrokVideoEmulator(queue_seconds=0, generation_seconds=0, video_bytes=3 * 1024 * 1024 + 7) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emu.base_url))
        yield emu


def test_to_a_local_file(fast_emulator: GrokVideoEmulator, tmp_path: Path) -> None:
    url = finished_video(fast_emulator)
    uri = keep(url, f"file://{tmp_path}/out/video.mp4")
    assert uri == f"file://{tmp_path}/out/video.mp4"
    assert (tmp_path / "out" / "video.mp4").read_bytes() == requests.get(url, timeout=10).content
    assert leftovers(tmp_path / "out") == ["video.mp4"]


def test_to_an_fsspec_memory_filesystem(fast_emulator: GrokVideoEmulator) -> None:
    import fsspec
    from airflow.sdk.io import attach

    attach("memory", fs=fsspec.filesystem("memory"))
    url = finished_video(fast_emulator)
    uri = keep(url, "memory://grok-test/videos/a.mp4")
    stored = ObjectStoragePath(uri)
    assert stored.read_bytes() == requests.get(url, timeout=10).content
    assert [p.name for p in stored.parent.iterdir()] == ["a.mp4"]


def test_a_different_object_at_dest_fails_naming_overwrite(
    fast_emulator: GrokVideoEmulator, tmp_path: Path
) -> None:
    url = finished_video(fast_emulator)
    (tmp_path / "v.mp4").write_bytes(b"precious")
    before = fast_emulator.count("GET", VIDEOS)
    with pytest.raises(AirflowFailException, match=r"already exists and is not this video.*overwrite=True"):
        keep(url, f"file://{tmp_path}/v.mp4")
    assert fast_emulator.count("GET", VIDEOS) == before + 1  # its headers only, to learn the size
    assert (tmp_path / "v.mp4").read_bytes() == b"precious"
    assert leftovers(tmp_path) == ["v.mp4"]
    keep(url, f"file://{tmp_path}/v.mp4", overwrite=True)
    assert (tmp_path / "v.mp4").stat().st_size == fast_emulator.video_bytes


def test_rerun_to_a_dest_holding_the_video_succeeds_without_copying(
    fast_emulator: GrokVideoEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    url = finished_video(fast_emulator)
    dest = f"file://{tmp_path}/v.mp4"
    keep(url, dest)
    first = (tmp_path / "v.mp4").stat()
    before = fast_emulator.count("GET", VIDEOS)
    assert keep(url, dest) == dest
    again = (tmp_path / "v.mp4").stat()
    assert (again.st_ino, again.st_mtime_ns, again.st_size) == (
        first.st_ino,
        first.st_mtime_ns,
        first.st_size,
    )
    assert fast_emulator.count("GET", VIDEOS) == before + 1
    assert leftovers(tmp_path) == ["v.mp4"]
    out, err = capfd.readouterr()
    assert "already holds the video" in out + err


def test_a_different_video_of_the_same_size_at_dest_fails_naming_overwrite(
    fast_emulator: GrokVideoEmulator, tmp_path: Path
) -> None:
    first, second = finished_video(fast_emulator), finished_video(fast_emulator)
    dest = f"file://{tmp_path}/v.mp4"
    keep(first, dest)
    kept = (tmp_path / "v.mp4").read_bytes()
    assert len(requests.get(second, timeout=10).content) == len(kept)  # the same size, other bytes
    with pytest.raises(AirflowFailException, match=r"already exists and is not this video.*overwrite=True"):
        keep(second, dest)
    assert (tmp_path / "v.mp4").read_bytes() == kept
    assert leftovers(tmp_path) == ["v.mp4"]
    keep(second, dest, overwrite=True)
    assert (tmp_path / "v.mp4").read_bytes() == requests.get(second, timeout=10).content


def test_a_rerun_with_another_size_reads_only_the_headers(
    tiny_server: Callable[..., tuple[str, list[dict[str, str]]]], tmp_path: Path
) -> None:
    # The server sends the headers of a 5,000,000-byte video, then nothing: reading the body would
    # time out; sizes that differ need the headers only.
    url, _ = tiny_server(None, {"Content-Length": "5000000", "Content-Type": "video/mp4"})
    (tmp_path / "v.mp4").write_bytes(b"x" * 4_000_000)
    started = time.monotonic()
    with pytest.raises(AirflowFailException, match=r"4000000 bytes; the video has 5000000"):
        keep(url, f"file://{tmp_path}/v.mp4", timeout=5, download_attempts=1)
    assert time.monotonic() - started < 4
    assert leftovers(tmp_path) == ["v.mp4"]


def test_a_rerun_stops_reading_at_the_first_difference(
    tiny_server: Callable[..., tuple[str, list[dict[str, str]]]], tmp_path: Path
) -> None:
    # 5,000,000 bytes announced, 1,000 sent (the 501st differs from the object's), then a stall.
    (tmp_path / "v.mp4").write_bytes(b"x" * 5_000_000)
    headers = {"Content-Length": "5000000", "Content-Type": "video/mp4"}
    url, _ = tiny_server(b"x" * 500 + b"y" * 500, headers, stall=True)
    started = time.monotonic()
    with pytest.raises(AirflowFailException, match=r"its bytes differ from byte 500\b.*overwrite=True"):
        keep(url, f"file://{tmp_path}/v.mp4", timeout=5, download_attempts=1, chunk_size=1000)
    assert time.monotonic() - started < 4
    assert (tmp_path / "v.mp4").read_bytes() == b"x" * 5_000_000


def test_a_rerun_compares_a_gzip_encoded_video_once_decoded(
    tiny_server: Callable[..., tuple[str, list[dict[str, str]]]], tmp_path: Path
) -> None:
    video = os.urandom(100_000) + bytes(400_000)
    encoded = gzip.compress(video)
    headers = {"Content-Encoding": "gzip", "Content-Length": str(len(encoded)), "Content-Type": "video/mp4"}
    url, seen = tiny_server(encoded, headers)
    (tmp_path / "v.mp4").write_bytes(video)
    assert keep(url, f"file://{tmp_path}/v.mp4", download_attempts=1) == f"file://{tmp_path}/v.mp4"
    (tmp_path / "v.mp4").write_bytes(video[:-1] + b"!")
    with pytest.raises(AirflowFailException, match=r"its bytes differ from byte 499,999"):
        keep(url, f"file://{tmp_path}/v.mp4", download_attempts=1)
    assert len(seen) == 2


@pytest.mark.parametrize("cut", [True, False])
def test_a_body_only_the_closing_connection_ends_is_not_stored(
    tiny_server: Callable[..., tuple[str, list[dict[str, str]]]], tmp_path: Path, cut: bool
) -> None:
    # No Content-Length and no chunked encoding: a cut body ends just as a whole one does.
    video = os.urandom(200_000)
    url, seen = tiny_server(video[: len(video) // 2] if cut else video, {"Connection": "close"})
    with pytest.raises(AirflowFailException, match="neither a Content-Length nor a chunked body"):
        keep(url, f"file://{tmp_path}/v.mp4", download_attempts=3)
    assert len(seen) == 1  # not retried: the server would frame it the same way
    assert leftovers(tmp_path) == []


def test_rerun_after_the_link_expired_says_how_to_go_on(
    fast_emulator: GrokVideoEmulator, tmp_path: Path
) -> None:
    (tmp_path / "v.mp4").write_bytes(b"kept earlier")
    with pytest.raises(AirflowFailException, match=r"link has probably expired.*mark this task successful"):
        keep(f"{fast_emulator.base_url}/videos/video_gone.mp4", f"file://{tmp_path}/v.mp4")
    assert (tmp_path / "v.mp4").read_bytes() == b"kept earlier"


def test_expired_link_says_so(fast_emulator: GrokVideoEmulator, tmp_path: Path) -> None:
    with pytest.raises(AirflowFailException, match="link has probably expired") as info:
        keep(f"{fast_emulator.base_url}/videos/video_gone.mp4?sig=SECRET", f"file://{tmp_path}/v.mp4")
    assert "SECRET" not in str(info.value)  # a signed URL's query is never shown
    url = finished_video(fast_emulator)
    fast_emulator.inject(Fault("status", status=403, method="GET", path_prefix=VIDEOS))
    with pytest.raises(AirflowFailException, match="HTTP 403; the link has probably expired"):
        keep(url, f"file://{tmp_path}/v.mp4")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("failure", ["refused", "status", "reset"])
def test_the_signed_query_reaches_no_error_and_no_log(
    fast_emulator: GrokVideoEmulator,
    closed_port_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    failure: str,
) -> None:
    from airflow.providers.common.compat.sdk import redact

    caplog.set_level(logging.INFO)
    query = f"?sig={SECRET}&expires=1732400000"
    if failure == "refused":
        url = f"{closed_port_url}/videos/v.mp4{query}"
    else:
        url = finished_video(fast_emulator) + query
        fault = Fault("status" if failure == "status" else "reset", status=503, times=10)
        fast_emulator.inject(replace(fault, method="GET", path_prefix=VIDEOS))
    with pytest.raises(AirflowException, match="gave up after 2 attempts") as info:
        keep(url, f"file://{tmp_path}/v.mp4", download_attempts=2)
    out, err = capfd.readouterr()
    logs = out + err + caplog.text
    assert "trying again in" in logs  # the logs were captured
    assert "/videos/v.mp4" in chain_text(info.value) or "/videos/video_" in chain_text(info.value)
    assert SECRET not in chain_text(info.value)
    assert SECRET not in logs
    # Whatever else logs the URL (urllib3 at DEBUG, say), Airflow's masker hides its query.
    assert SECRET not in redact(f"GET {url}")
    assert leftovers(tmp_path) == []


def test_interrupted_download_leaves_nothing(fast_emulator: GrokVideoEmulator, tmp_path: Path) -> None:
    url = finished_video(fast_emulator)
    fast_emulator.inject(Fault("reset", method="GET", path_prefix=VIDEOS, times=100))
    with pytest.raises(AirflowException, match="gave up after 2 attempts"):
        keep(url, f"file://{tmp_path}/v.mp4", download_attempts=2)
    assert leftovers(tmp_path) == []


def test_transient_failures_restart_the_download(fast_emulator: GrokVideoEmulator, tmp_path: Path) -> None:
    url = finished_video(fast_emulator)
    fast_emulator.inject(Fault("status", status=503, method="GET", path_prefix=VIDEOS))
    fast_emulator.inject(Fault("reset", method="GET", path_prefix=VIDEOS))
    keep(url, f"file://{tmp_path}/v.mp4")
    assert (tmp_path / "v.mp4").stat().st_size == fast_emulator.video_bytes
    assert fast_emulator.count("GET", VIDEOS) == 3  # two faults, then the download
    assert leftovers(tmp_path) == ["v.mp4"]


def test_gzip_encoded_download_is_checked_like_with_like(
    tiny_server: Callable[..., tuple[str, list[dict[str, str]]]], tmp_path: Path
) -> None:
    video = os.urandom(100_000) + bytes(400_000)  # compresses to about a fifth
    encoded = gzip.compress(video)
    headers = {"Content-Encoding": "gzip", "Content-Length": str(len(encoded)), "Content-Type": "video/mp4"}
    url, seen = tiny_server(encoded, headers)  # gzip whatever the client accepts, as some CDNs do
    keep(url, f"file://{tmp_path}/v.mp4", download_attempts=1)
    assert [request["Accept-Encoding"] for request in seen] == ["identity"]
    assert (tmp_path / "v.mp4").read_bytes() == video
    assert leftovers(tmp_path) == ["v.mp4"]


@pytest.mark.parametrize(
    ("video_url", "says"),
    [
        ("None", "video_url is missing"),
        ("", "video_url is missing"),
        ("  ", "video_url is missing"),
        (None, "video_url is missing"),
        ("ftp://example.com/v.mp4", r"not an http\(s\) URL"),
        ("/videos/v.mp4", r"not an http\(s\) URL"),
        ("http://[::1/v.mp4", r"not an http\(s\) URL"),
    ],
)
def test_a_missing_or_invalid_url_fails_at_once(
    fast_emulator: GrokVideoEmulator, tmp_path: Path, video_url: Any, says: str
) -> None:
    started = time.monotonic()
    with pytest.raises(AirflowFailException, match=f"{says}.*upstream task's XCom"):
        keep(video_url, f"file://{tmp_path}/v.mp4")
    assert time.monotonic() - started < 1  # no download attempts, no backoff
    assert fast_emulator.requests == []
    assert leftovers(tmp_path) == []


def test_200_mb_in_constant_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    size = 200 * 1024 * 1024
    with GrokVideoEmulator(queue_seconds=0, generation_seconds=0, video_bytes=size) as emu:
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emu.base_url))
        url = finished_video(emu)
        tracemalloc.start()
        keep(url, f"file://{tmp_path}/big.mp4")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert (tmp_path / "big.mp4").stat().st_size == size
    assert peak < 16 * 1024 * 1024, f"peak Python allocations {peak / 1e6:.1f} MB"


@pytest.mark.usefixtures("airflow_db")
def test_keep_example_dag(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_GROK_VIDEO_DIR", str(tmp_path))
    run = run_dag("grok_video_keep")
    assert states(run) == {"make_video": "success", "keep_video": "success", "announce": "success"}
    [stored] = list(tmp_path.iterdir())
    assert xcom(run, "announce") == f"file://{stored}"
    assert stored.stat().st_size == emulator.video_bytes
    assert emulator.creates == 1


@pytest.mark.usefixtures("airflow_db")
def test_keep_example_dag_run_again_with_a_new_video_keeps_the_first(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The run again buys another video of the same size: the kept one stays, and says it is not this one."""
    import pendulum

    from tests.test_dags import dag_bag

    monkeypatch.setenv("AIRFLOW_VAR_GROK_VIDEO_DIR", str(tmp_path))
    logical_date = pendulum.datetime(2026, 3, 1, tz="UTC")
    dag = dag_bag().dags["grok_video_keep"]
    first = dag.test(run_after=logical_date, logical_date=logical_date)
    [stored] = list(tmp_path.iterdir())
    before, kept = stored.stat(), stored.read_bytes()
    again = dag.test(run_after=logical_date, logical_date=logical_date)  # same run id, so same dest
    assert again.run_id == first.run_id
    assert emulator.accepted_creates == 2  # a second video, of the same size as the first
    assert states(again) == {"make_video": "success", "keep_video": "failed", "announce": "upstream_failed"}
    after = stored.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert stored.read_bytes() == kept and list(tmp_path.iterdir()) == [stored]
    [extra] = asset_events(f"file://{stored}")  # no event describes the second video as kept
    assert extra["video_task_id"] == next(iter(emulator.tasks))


def asset_events(uri: str) -> list[dict[str, Any]]:
    """The extras of the asset events the metadata database holds for ``uri``."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == uri)
        ).all()
        return [dict(row.extra) for row in rows]


@pytest.mark.usefixtures("airflow_db")
def test_a_kept_video_is_an_asset_event_saying_what_it_is(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRFLOW_VAR_GROK_VIDEO_DIR", str(tmp_path))
    run = run_dag("grok_video_keep")  # dest is templated: the event goes through the asset alias
    assert states(run) == {"make_video": "success", "keep_video": "success", "announce": "success"}
    [stored] = list(tmp_path.iterdir())
    [video] = emulator.tasks.values()
    [extra] = asset_events(f"file://{stored}")
    prompt = "Waves rolling onto a black sand beach at sunset"
    expires = datetime.fromtimestamp(int(video.done_at), tz=timezone.utc) + timedelta(days=3)
    assert {k: v for k, v in extra.items() if not k.startswith("from_")} == {
        "uri": f"file://{stored}",
        "bytes": emulator.video_bytes,
        "video_task_id": video.task_id,
        "model": "grok-imagine-video-1.5",
        "seconds": 10,
        "prompt": prompt,
        "prompt_sha256": hashlib.sha256(prompt.encode()).hexdigest(),
        "source_url_expires_at": expires.isoformat(),
    }


@pytest.mark.usefixtures("airflow_db")
def test_a_fixed_dest_is_declared_as_an_outlet_asset(emulator: GrokVideoEmulator, tmp_path: Path) -> None:
    from airflow.sdk import Asset

    dest = f"file://{tmp_path}/fixed.mp4"
    operator = GrokVideoToStorageOperator(task_id="keep", video_url="https://x.example/v.mp4", dest=dest)
    assert operator.outlets == [Asset(dest)]
    templated = GrokVideoToStorageOperator(task_id="keep", video_url="v", dest="file:///v/{{ run_id }}.mp4")
    assert [type(o).__name__ for o in templated.outlets] == ["AssetAlias"]


# -- the connection's proxy and CA bundle -------------------------------------------------------------


def set_grok_connection(monkeypatch: pytest.MonkeyPatch, base_url: str, extra: dict[str, Any]) -> None:
    fields = {"conn_type": "grok_video", "host": base_url, "password": API_KEY, "extra": json.dumps(extra)}
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", json.dumps(fields))


def test_the_download_goes_through_the_connections_proxy(
    fast_emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = finished_video(fast_emulator)
    cdn_url = url.replace(fast_emulator.base_url, "http://cdn.grok-video.test") + f"?sig={SECRET}"
    with ForwardProxy(routes={"cdn.grok-video.test:80": ("127.0.0.1", fast_emulator.port)}) as proxy:
        set_grok_connection(monkeypatch, fast_emulator.base_url, {"proxies": {"http": proxy.url}})
        keep(cdn_url, f"file://{tmp_path}/v.mp4")
    assert (tmp_path / "v.mp4").read_bytes() == requests.get(url, timeout=10).content
    assert [(s.method, s.target) for s in proxy.seen] == [("GET", cdn_url)]
    assert "authorization" not in proxy.seen[0].headers  # the API's key never goes to another host


def test_the_download_verifies_with_the_connections_ca_bundle(
    fast_emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = finished_video(fast_emulator)
    (tmp_path / "pki").mkdir()
    pki = make_pki(tmp_path / "pki")
    with Gateway(fast_emulator.base_url, ssl_context=pki.server_context()) as cdn:
        tls_url = url.replace(fast_emulator.base_url, cdn.base_url)
        set_grok_connection(monkeypatch, fast_emulator.base_url, {"verify": str(pki.ca)})
        keep(tls_url, f"file://{tmp_path}/v.mp4")
        set_grok_connection(monkeypatch, fast_emulator.base_url, {})  # the default bundle: refused
        with pytest.raises(AirflowException, match=r"failed \(SSLError\)"):
            keep(tls_url, f"file://{tmp_path}/w.mp4", download_attempts=1)
    assert (tmp_path / "v.mp4").read_bytes() == requests.get(url, timeout=10).content
    assert [s.headers.get("authorization") for s in cdn.seen] == [None]  # the refused one never got in


def test_an_unusable_proxy_setting_fails_before_any_download(
    fast_emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = finished_video(fast_emulator)
    before = fast_emulator.count("GET", VIDEOS)
    set_grok_connection(monkeypatch, fast_emulator.base_url, {"proxies": {"http": "socks5://127.0.0.1:1"}})
    with pytest.raises(AirflowFailException, match=r"only http:// proxies are supported"):
        keep(url, f"file://{tmp_path}/v.mp4")
    assert fast_emulator.count("GET", VIDEOS) == before
    assert leftovers(tmp_path) == []
