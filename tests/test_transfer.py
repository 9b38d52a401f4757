"""Keeping the video: streamed to any ObjectStoragePath, complete or not at all."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
import requests
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException
from airflow.sdk import ObjectStoragePath

from airflow_grok_video.emulator import Fault, GrokVideoEmulator
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.transfers.grok_video_to_storage import GrokVideoToStorageOperator
from tests.conftest import conn_json
from tests.test_dags import run_dag, states, xcom

VIDEOS = "/videos/"


def finished_video(emu: GrokVideoEmulator) -> str:
    task_id = GrokVideoHook().create_video(prompt="a fox", image_url="https://example.com/f.png")["task_id"]
    url = f"{emu.base_url}/videos/{task_id}.mp4"
    deadline = time.monotonic() + 10
    while requests.head(url, timeout=5).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return url


def keep(url: str, dest: str, **kwargs: Any) -> str:
    operator = GrokVideoToStorageOperator(task_id="keep", video_url=url, dest=dest, **kwargs)
    return str(operator.execute({}))  # type: ignore[arg-type]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


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


def test_existing_destination_is_kept_unless_overwrite(
    fast_emulator: GrokVideoEmulator, tmp_path: Path
) -> None:
    url = finished_video(fast_emulator)
    (tmp_path / "v.mp4").write_bytes(b"precious")
    before = fast_emulator.count("GET", VIDEOS)
    with pytest.raises(AirflowFailException, match="already exists; set overwrite=True"):
        keep(url, f"file://{tmp_path}/v.mp4")
    assert fast_emulator.count("GET", VIDEOS) == before
    assert (tmp_path / "v.mp4").read_bytes() == b"precious"
    keep(url, f"file://{tmp_path}/v.mp4", overwrite=True)
    assert (tmp_path / "v.mp4").stat().st_size == fast_emulator.video_bytes


def test_expired_link_says_so(fast_emulator: GrokVideoEmulator, tmp_path: Path) -> None:
    with pytest.raises(AirflowFailException, match="link has probably expired") as info:
        keep(f"{fast_emulator.base_url}/videos/video_gone.mp4?sig=SECRET", f"file://{tmp_path}/v.mp4")
    assert "SECRET" not in str(info.value)  # a signed URL's query is never shown
    url = finished_video(fast_emulator)
    fast_emulator.inject(Fault("status", status=403, method="GET", path_prefix=VIDEOS))
    with pytest.raises(AirflowFailException, match="HTTP 403; the link has probably expired"):
        keep(url, f"file://{tmp_path}/v.mp4")
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
