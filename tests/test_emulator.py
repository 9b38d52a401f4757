"""The emulator itself over real HTTP: the documented API, its faults, its record and its CLI."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import inspect
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

import airflow_grok_video.emulator
from airflow_grok_video.emulator import EmulatedVideo, Fault, GrokVideoEmulator, RecordedRequest, Rule
from airflow_grok_video.emulator.progress import ProgressModel

CREATE = "/api/open-api/v1/grok/videos"
QUERY = "/api/open-api/v1/videos/"
VIDEOS = "/videos/"
KEY = "sk_emulator_test"
BODY: dict[str, Any] = {
    "model": "grok-1.5",
    "prompt": "a fox",
    "image_urls": ["https://example.com/fox.png"],
    "duration": 10,
}
CONNECTION_ERRORS = (ConnectionError, urllib.error.URLError, OSError, http.client.HTTPException)


def call(
    emu: GrokVideoEmulator,
    method: str,
    path: str,
    body: Any = None,
    key: str | None = KEY,
    raw_body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:
    data = raw_body if body is None else json.dumps(body).encode()
    request = urllib.request.Request(emu.base_url + path, data=data, method=method)
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def envelope(
    emu: GrokVideoEmulator, method: str, path: str, body: Any = None, **kw: Any
) -> tuple[int, dict[str, Any]]:
    status, _, raw = call(emu, method, path, body, **kw)
    return status, json.loads(raw)


def create(emu: GrokVideoEmulator, **change: Any) -> str:
    status, answer = envelope(emu, "POST", CREATE, {**BODY, **change})
    assert (status, answer["code"]) == (200, "20000"), answer
    return str(answer["data"]["task_id"])


def query(emu: GrokVideoEmulator, task_id: str) -> dict[str, Any]:
    status, answer = envelope(emu, "GET", QUERY + task_id)
    assert (status, answer["code"]) == (200, "20000"), answer
    data: dict[str, Any] = answer["data"]
    return data


def control(emu: GrokVideoEmulator, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    status, _, raw = call(emu, method, "/_emulator/" + path, body, key=None)
    return status, json.loads(raw)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def emu() -> Iterator[GrokVideoEmulator]:
    with GrokVideoEmulator(
        queue_seconds=0.2, generation_seconds=0.6, api_keys=[KEY], video_bytes=300_000
    ) as e:
        yield e


@pytest.fixture
def instant() -> Iterator[GrokVideoEmulator]:
    """Tasks are done as soon as created; any ``sk_`` key is accepted."""
    with GrokVideoEmulator(queue_seconds=0, generation_seconds=0) as e:
        yield e


# -- auth ------------------------------------------------------------------------------------------


def test_auth_missing_wrong_and_accepted(emu: GrokVideoEmulator) -> None:
    unauthorized = {"code": "40100", "msg": "invalid or missing API key", "data": None}
    assert envelope(emu, "POST", CREATE, BODY, key=None) == (401, unauthorized)
    assert envelope(emu, "POST", CREATE, BODY, key="sk_other") == (401, unauthorized)
    assert envelope(emu, "GET", QUERY + "x", key="sk_other") == (401, unauthorized)
    assert envelope(emu, "POST", CREATE, BODY)[0] == 200
    assert [r.auth_ok for r in emu.requests] == [False, False, False, True]
    assert emu.accepted_creates == 1


def test_auth_without_key_list_accepts_any_sk_key(instant: GrokVideoEmulator) -> None:
    assert envelope(instant, "GET", QUERY + "x", key="sk_anything")[0] == 404
    assert envelope(instant, "GET", QUERY + "x", key="pk_anything")[0] == 401
    assert envelope(instant, "GET", QUERY + "x", key="")[0] == 401


def test_the_key_is_never_recorded(emu: GrokVideoEmulator) -> None:
    create(emu)
    envelope(emu, "POST", CREATE, BODY, key="sk_wrong_SECRET")
    _, recorded = control(emu, "GET", "requests")
    assert KEY not in json.dumps(recorded) and "SECRET" not in json.dumps(recorded)


# -- create validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": "grok-2"}, "model"),
        ({"model": None}, "model"),
        ({"prompt": " "}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"prompt": 5}, "prompt"),
        ({"image_urls": []}, "image_urls"),
        ({"image_urls": None}, "image_urls"),
        ({"image_urls": ["a", "b"]}, "image_urls"),
        ({"image_urls": [5]}, "image_urls"),
        ({"image_urls": "https://x/y.png"}, "image_urls"),
        ({"image_urls": [], "images": ["a", "b"]}, "images"),
        ({"duration": 12}, "duration"),
        ({"duration": True}, "duration"),
        ({"duration": 10.0}, "duration"),
        ({"duration": "10"}, "duration"),
        ({"ratio": "4:3"}, "ratio"),
        ({"ratio": 169}, "ratio"),
        ({"orientation": "square"}, "orientation"),
        ({"ratio": "", "orientation": "square"}, "orientation"),
    ],
)
def test_validation(emu: GrokVideoEmulator, change: dict[str, Any], field: str) -> None:
    status, answer = envelope(emu, "POST", CREATE, {**BODY, **change})
    assert status == 400 and answer["code"] == "40000" and answer["data"] is None
    assert answer["msg"].startswith(f"{field}: ")
    assert emu.accepted_creates == 0 and emu.creates == 1


@pytest.mark.parametrize("raw", [b"[1, 2]", b"not json", b"", b'"text"'])
def test_body_must_be_a_json_object(emu: GrokVideoEmulator, raw: bytes) -> None:
    status, _, answer = call(emu, "POST", CREATE, raw_body=raw)
    assert status == 400 and json.loads(answer)["code"] == "40000"
    assert json.loads(answer)["msg"].startswith("body: ")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({}, {}),
        ({"model": "grok_1_5", "duration": 15}, {"duration": 15}),
        ({"model": "grok-imagine-video-1.5", "duration": None}, {}),
        ({"orientation": "portrait"}, {"ratio": "9:16"}),
        ({"ratio": "", "orientation": "landscape"}, {}),
        ({"ratio": "1:1", "orientation": "portrait"}, {"ratio": "1:1"}),
        ({"ratio": "2:3", "orientation": "square"}, {"ratio": "2:3"}),  # orientation ignored
        ({"image_urls": None, "images": ["https://x/y.png"]}, {"image_url": "https://x/y.png"}),
    ],
)
def test_accepted_creates_are_normalized(
    instant: GrokVideoEmulator, change: dict[str, Any], expected: dict[str, Any]
) -> None:
    status, answer = envelope(instant, "POST", CREATE, {**BODY, **change}, key="sk_any")
    assert status == 200 and answer["code"] == "20000" and answer["msg"] == "ok"
    data = answer["data"]
    assert set(data) == {"task_id", "status", "model", "created_at"}
    assert data["task_id"].startswith("video_") and len(data["task_id"]) == len("video_") + 32
    assert (data["status"], data["model"]) == ("queued", "grok-imagine-video-1.5")
    assert abs(data["created_at"] - time.time()) < 5
    task = instant.tasks[data["task_id"]]
    stored = {
        "model": task.model,
        "duration": task.duration,
        "ratio": task.ratio,
        "image_url": task.image_url,
    }
    defaults = {
        "model": "grok-imagine-video-1.5",
        "duration": 10,
        "ratio": "16:9",
        "image_url": BODY["image_urls"][0],
    }
    assert stored == {**defaults, **expected}


def test_images_used_only_when_image_urls_is_empty(instant: GrokVideoEmulator) -> None:
    task_id = create(instant, image_urls=[], images=["https://x/compat.png"])
    assert instant.tasks[task_id].image_url == "https://x/compat.png"
    task_id = create(instant, images=["https://x/ignored.png"])
    assert instant.tasks[task_id].image_url == "https://example.com/fox.png"


# -- the status machine ----------------------------------------------------------------------------


def test_status_machine_progress_and_video(emu: GrokVideoEmulator) -> None:
    task_id = create(emu)
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["status"] != "completed":
        seen.append(query(emu, task_id))
        time.sleep(0.03)
    queued = [d for d in seen if d["status"] == "queued"]
    processing = [d["progress"] for d in seen if d["status"] == "processing"]
    assert queued and all(d["progress"] == 0 and d["completed_at"] is None for d in queued)
    assert len(processing) >= 5 and processing == sorted(processing) and processing[-1] > processing[0]
    assert all(1 <= p <= 99 for p in processing)
    assert [d["status"] for d in seen] == sorted(
        (d["status"] for d in seen), key=["queued", "processing", "completed"].index
    )
    for data in seen:
        assert set(data) == {
            "task_id",
            "status",
            "progress",
            "model",
            "created_at",
            "completed_at",
            "result",
            "error_message",
        }
        if data["status"] != "completed":
            assert (data["result"], data["error_message"], data["completed_at"]) == (None, None, None)
    done = seen[-1]
    assert (done["progress"], done["model"], done["error_message"]) == (100, "grok-imagine-video-1.5", None)
    assert 0 <= done["completed_at"] - done["created_at"] <= 2
    assert done["result"] == {
        "video_url": f"{emu.base_url}/videos/{task_id}.mp4",
        "image_url": "https://example.com/fox.png",
    }


def test_unknown_task_is_404(emu: GrokVideoEmulator) -> None:
    assert envelope(emu, "GET", QUERY + "video_nope") == (
        404,
        {"code": "40400", "msg": "task not found", "data": None},
    )


# -- rules ------------------------------------------------------------------------------------------


def test_rules_failed_and_success_spelling(emu: GrokVideoEmulator) -> None:
    emu.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="content policy"))
    emu.add_rule(Rule(prompt_contains="faq", status_spelling="success", generation_seconds=0))
    doomed = create(emu, prompt="a doomed fox")
    faq = create(emu, prompt="faq fox")
    assert query(emu, doomed)["status"] == "queued"
    time.sleep(0.9)
    failed = query(emu, doomed)
    assert (failed["status"], failed["progress"], failed["error_message"], failed["result"]) == (
        "failed",
        0,
        "content policy",
        None,
    )
    assert failed["completed_at"] is not None
    success = query(emu, faq)
    assert (success["status"], success["progress"]) == ("success", 100)
    assert call(emu, "GET", f"/videos/{doomed}.mp4")[0] == 404
    assert call(emu, "GET", f"/videos/{faq}.mp4")[0] == 200


def test_first_matching_rule_wins_times_and_clear(instant: GrokVideoEmulator) -> None:
    instant.add_rule(Rule(prompt_contains="fox", outcome="failed", times=1))
    instant.add_rule(Rule(prompt_contains="fox", status_spelling="success"))
    first, second = create(instant), create(instant)
    assert [query(instant, t)["status"] for t in (first, second)] == ["failed", "success"]
    instant.clear_rules()
    assert query(instant, create(instant))["status"] == "completed"


def test_rule_generation_time_and_processing_status(instant: GrokVideoEmulator) -> None:
    instant.add_rule(Rule(prompt_contains="slow", generation_seconds=60, processing_status="rendering"))
    data = query(instant, create(instant, prompt="slow fox"))
    assert (data["status"], data["progress"]) == ("rendering", 1)
    assert query(instant, create(instant))["status"] == "completed"


def test_rule_and_fault_fields_are_checked() -> None:
    with pytest.raises(ValueError, match="outcome"):
        Rule(prompt_contains="x", outcome="done")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        Fault("teapot")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="times"):
        Fault("html", times=0)


# -- progress models --------------------------------------------------------------------------------


def progress_over(
    model: ProgressModel, seconds: list[float], queue: float = 1.0, generation: float = 100.0
) -> list[tuple[str, int]]:
    """The (phase, progress) a task created at 0 reports at each of ``seconds``."""
    return [model.state(0.0, queue, generation, now) for now in seconds]


def test_the_default_model_is_the_original_fixed_queue_then_linear_from_the_processing_start() -> None:
    assert ProgressModel.parse("default") == ProgressModel() == ProgressModel.parse("")
    assert progress_over(ProgressModel(), [0, 0.99, 1, 1.5, 26, 51.9, 100.99, 101]) == [
        ("queued", 0),
        ("queued", 0),
        ("processing", 1),  # 1-99 while processing, never 0
        ("processing", 1),
        ("processing", 25),
        ("processing", 50),
        ("processing", 99),
        ("done", 100),
    ]
    video = EmulatedVideo(
        "video_1", "m", "p", "https://i", 10, "16:9", created=1000.0, queue_seconds=2, generation_seconds=10
    )
    assert video.progress_model == ProgressModel() and video.done_at == 1012.0
    assert [(video.status(t), video.view("", t)["progress"]) for t in (1001, 1007, 1012)] == [
        ("queued", 0),
        ("processing", 50),
        ("completed", 100),
    ]


def test_a_queue_share_makes_the_generation_time_the_whole_time() -> None:
    model = ProgressModel(queue=0.2)
    assert model.timeline(queue_seconds=1.0, generation_seconds=100.0) == (20.0, 100.0)
    # Progress from the processing start: 20-100 s is 0-100%.
    assert progress_over(model, [0, 19.9, 20, 60, 99.9, 100]) == [
        ("queued", 0),
        ("queued", 0),
        ("processing", 1),
        ("processing", 50),
        ("processing", 99),
        ("done", 100),
    ]
    video = EmulatedVideo(
        "v",
        "m",
        "p",
        "https://i",
        10,
        "16:9",
        created=0.0,
        queue_seconds=1,
        generation_seconds=100,
        progress_model=model,
    )
    assert video.done_at == 100.0 and video.view("", 99.9)["completed_at"] is None


def test_progress_counted_from_the_create_starts_at_the_queued_share() -> None:
    model = ProgressModel(queue=0.3, origin="created")
    assert progress_over(model, [29.9, 30, 50, 99.9, 100]) == [
        ("queued", 0),
        ("processing", 30),  # the first processing answer already shows the time spent queued
        ("processing", 50),
        ("processing", 99),
        ("done", 100),
    ]
    # With the default fixed queue too: 1 s queued of 101 s in all.
    assert progress_over(ProgressModel(origin="created"), [1, 50.5]) == [
        ("processing", 1),
        ("processing", 50),
    ]


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ("linear", [1, 10, 25, 50, 75, 90, 99]),
        ("ease-in", [1, 1, 6, 25, 56, 81, 99]),  # slow start, fast finish: f squared
        ("ease-out", [1, 19, 43, 75, 93, 99, 99]),  # fast start, slow finish: 1 - (1 - f) squared
        ("smoothstep", [1, 2, 15, 50, 84, 97, 99]),  # slow at both ends
        ("steps", [1, 10, 20, 50, 70, 90, 90]),  # 10 % at a time (1 % in the first tenth)
        ("none", [0, 0, 0, 0, 0, 0, 0]),  # processing, but 0 until done
    ],
)
def test_each_shape_over_time(shape: str, expected: list[int]) -> None:
    model = ProgressModel.parse(f"shape={shape}")
    seconds = [0, 10, 25, 50, 75, 90, 99.9]  # fractions of a 100 s generation, no queue
    states = progress_over(model, seconds, queue=0.0)
    assert [phase for phase, _ in states] == ["processing"] * len(seconds)
    assert [progress for _, progress in states] == expected
    assert model.state(0.0, 0.0, 100.0, 100.0) == ("done", 100)


def test_every_model_rises_monotonically_and_ends_on_time() -> None:
    for queue in (None, 0.0, 0.1, 0.3):
        for origin in ("processing", "created"):
            for shape in ("linear", "ease-in", "ease-out", "smoothstep", "steps", "none"):
                model = ProgressModel(queue=queue, origin=origin, shape=shape)  # type: ignore[arg-type]
                states = progress_over(model, [t / 4 for t in range(0, 4 * 130)], queue=2.0, generation=120.0)
                progress = [p for _, p in states]
                assert progress == sorted(progress), model
                phases = [phase for phase, _ in states]
                assert phases == sorted(phases, key=["queued", "processing", "done"].index), model
                end = model.timeline(2.0, 120.0)[1]
                assert model.state(0.0, 2.0, 120.0, end - 0.01)[0] != "done"
                assert model.state(0.0, 2.0, 120.0, end) == ("done", 100)


def test_progress_model_specs_parse_print_and_are_checked() -> None:
    model = ProgressModel.parse("shape=ease-out, queue=20%, origin=created")
    assert model == ProgressModel(queue=0.2, origin="created", shape="ease-out")
    assert str(model) == "shape=ease-out,queue=0.2,origin=created"
    assert ProgressModel.parse(str(model)) == model
    assert ProgressModel.parse({"shape": "steps", "queue": 0.1}) == ProgressModel(queue=0.1, shape="steps")
    assert str(ProgressModel()) == "default" and str(ProgressModel(shape="none")) == "shape=none"
    for spec, field in [
        ("shape=wobbly", "shape"),
        ("origin=later", "origin"),
        ("queue=0.5", "queue"),
        ("queue=lots", "queue"),
        ("speed=2", "unknown part"),
    ]:
        with pytest.raises(ValueError, match=field):
            ProgressModel.parse(spec)


def test_a_rule_picks_its_model_over_the_emulators(instant: GrokVideoEmulator) -> None:
    spec: Any = "shape=steps"  # a spec, as /_emulator/rules passes it on
    instant.add_rule(Rule(prompt_contains="stepped", generation_seconds=60, progress_model=spec))
    stepped, plain = create(instant, prompt="stepped fox"), create(instant)
    assert instant.tasks[stepped].progress_model == ProgressModel(shape="steps")
    assert instant.tasks[plain].progress_model == ProgressModel()
    with pytest.raises(ValueError, match="shape"):
        Rule(prompt_contains="x", progress_model="shape=wobbly")  # type: ignore[arg-type]


def test_the_emulators_model_from_its_constructor_and_config(emu: GrokVideoEmulator) -> None:
    with GrokVideoEmulator(progress_model="shape=none,queue=0.1") as other:
        assert other.progress_model == ProgressModel(queue=0.1, shape="none")
    assert emu.progress_model == ProgressModel()
    assert (
        control(emu, "POST", "config", {"progress_model": {"shape": "ease-in", "origin": "created"}})[0]
        == 200
    )
    task_id = create(emu)
    assert emu.tasks[task_id].progress_model == ProgressModel(origin="created", shape="ease-in")
    assert control(emu, "POST", "config", {"progress_model": "shape=steps,queue=0.3"})[0] == 200
    assert emu.progress_model == ProgressModel(queue=0.3, shape="steps")
    status, answer = control(emu, "POST", "config", {"progress_model": "shape=wobbly"})
    assert status == 400 and "shape" in answer["error"]
    assert control(emu, "POST", "rules", {"prompt_contains": "x", "progress_model": "queue=0.9"})[0] == 400
    assert emu.progress_model == ProgressModel(queue=0.3, shape="steps")  # a refused setting changes nothing


def test_the_cli_flag_names_the_model() -> None:
    from airflow_grok_video.emulator.__main__ import _parser

    assert _parser().parse_args([]).progress_model == ProgressModel()
    args = _parser().parse_args(["--progress-model", "shape=smoothstep,queue=0.2"])
    assert args.progress_model == ProgressModel(queue=0.2, shape="smoothstep")


# -- video bytes ------------------------------------------------------------------------------------


def test_video_download(emu: GrokVideoEmulator) -> None:
    task_id = create(emu)
    assert call(emu, "GET", f"/videos/{task_id}.mp4", key=None)[0] == 404  # not done yet
    assert call(emu, "GET", "/videos/video_unknown.mp4", key=None)[0] == 404
    time.sleep(0.85)
    status, headers, raw = call(emu, "GET", f"/videos/{task_id}.mp4", key=None)
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    assert int(headers["Content-Length"]) == len(raw) == 300_000
    assert raw[4:8] == b"ftyp" and int.from_bytes(raw[:4], "big") == 24
    assert call(emu, "GET", f"/videos/{task_id}.mp4", key=None)[2] == raw  # deterministic
    assert [(r.path, r.status) for r in emu.requests if r.path.startswith(VIDEOS)] == [
        (f"/videos/{task_id}.mp4", 404),
        ("/videos/video_unknown.mp4", 404),
        (f"/videos/{task_id}.mp4", 200),
        (f"/videos/{task_id}.mp4", 200),
    ]


def test_each_video_task_has_bytes_of_its_own(instant: GrokVideoEmulator) -> None:
    first, second = create(instant), create(instant)
    one = call(instant, "GET", f"/videos/{first}.mp4")[2]
    other = call(instant, "GET", f"/videos/{second}.mp4")[2]
    assert len(one) == len(other) == instant.video_bytes and one != other
    assert one[28:32] == b"free" and first.encode() in one[:100]  # a box after ftyp names the task
    assert call(instant, "GET", f"/videos/{first}.mp4")[2] == one
    instant.inject(Fault("reset", path_prefix=VIDEOS))
    sock = socket.create_connection((instant.host, instant.port), timeout=5)
    with sock:
        sock.sendall(f"GET /videos/{first}.mp4 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
    body = received.partition(b"\r\n\r\n")[2]
    assert body and one.startswith(body)  # a cut download is the start of the same video


def test_large_video_is_streamed() -> None:
    size = 60 * 1024 * 1024 + 3
    with GrokVideoEmulator(queue_seconds=0, generation_seconds=0, video_bytes=size) as emu:
        task_id = create(emu)
        connection = http.client.HTTPConnection("127.0.0.1", emu.port, timeout=10)
        tracemalloc.start()
        try:
            connection.request("GET", f"/videos/{task_id}.mp4")
            response = connection.getresponse()
            received = 0
            while chunk := response.read(1 << 20):
                received += len(chunk)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
            connection.close()
    assert received == size == int(response.headers["Content-Length"])
    assert peak < 16 * 1024 * 1024, f"peak allocations {peak / 1e6:.1f} MB"


def get_video(emu: GrokVideoEmulator, task_id: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """A download of a task's video with these headers (``If_Range`` is sent as ``If-Range``)."""
    request = urllib.request.Request(f"{emu.base_url}/videos/{task_id}.mp4")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def cut_download(emu: GrokVideoEmulator, task_id: str, extra_headers: str = "") -> tuple[bytes, bytes]:
    """The head and body a download gets through before a ``reset`` fault drops its connection."""
    emu.inject(Fault("reset", path_prefix=VIDEOS))
    received = b""
    with socket.create_connection((emu.host, emu.port), timeout=5) as sock:
        sock.sendall(f"GET /videos/{task_id}.mp4 HTTP/1.1\r\nHost: x\r\n{extra_headers}\r\n".encode())
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


def mp4_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """The top-level boxes of an MP4 file: (type, offset, size); they must tile it exactly."""
    boxes, offset = [], 0
    while offset < len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        assert size >= 8, f"box at {offset} has size {size}"
        boxes.append((data[offset + 4 : offset + 8], offset, size))
        offset += size
    assert offset == len(data), "the last box runs past the end of the file"
    return boxes


def test_default_video_bytes_are_unchanged(instant: GrokVideoEmulator) -> None:
    assert instant.playable is False
    task_id = create(instant)
    status, headers, raw = get_video(instant, task_id)
    name = task_id.encode()
    head = (
        b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"
        + (8 + len(name)).to_bytes(4, "big")
        + b"free"
        + name
    )
    pattern = bytes(range(256)) * (65536 // 256 + 1)
    assert (status, headers["Content-Type"], headers["Accept-Ranges"]) == (200, "video/mp4", "bytes")
    assert raw == head + pattern[: 65536 - len(head)] and int(headers["Content-Length"]) == 65536
    assert "Content-Range" not in headers


def test_playable_videos_are_the_clip_then_a_box_naming_the_task() -> None:
    clip = (pathlib.Path(airflow_grok_video.emulator.__file__).parent / "sample.mp4").read_bytes()
    with GrokVideoEmulator(queue_seconds=0, generation_seconds=0, video_bytes=300_000, playable=True) as emu:
        first, second = create(emu), create(emu)
        status, headers, one = get_video(emu, first)
        other = get_video(emu, second)[2]
        assert (status, headers["Content-Type"]) == (200, "video/mp4")
        box = (8 + len(first)).to_bytes(4, "big") + b"free" + first.encode()
        assert one == clip + box  # video_bytes does not apply
        assert int(headers["Content-Length"]) == len(one) == len(clip) + 8 + len(first)
        assert other.startswith(clip) and other.endswith(second.encode()) and one != other
        assert get_video(emu, first)[2] == one  # deterministic
        head = urllib.request.Request(f"{emu.base_url}/videos/{first}.mp4", method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as response:
            assert (int(response.headers["Content-Length"]), response.read()) == (len(one), b"")
    # A valid MP4: boxes tiling the file, the index (moov) before the media (mdat), the task's box last.
    boxes = mp4_boxes(one)
    types = [kind for kind, _, _ in boxes]
    assert types[0] == b"ftyp" and types.index(b"moov") < types.index(b"mdat") and types[-1] == b"free"
    assert boxes[-1][1:] == (len(clip), len(box))
    _, moov_at, moov_size = boxes[types.index(b"moov")]
    moov = one[moov_at : moov_at + moov_size]
    assert b"avc1" in moov and b"avcC" in moov  # H.264
    mvhd = moov[moov.index(b"mvhd") + 4 :]
    timescale, duration = int.from_bytes(mvhd[12:16], "big"), int.from_bytes(mvhd[16:20], "big")
    assert 5.5 <= duration / timescale <= 6.5
    assert len(clip) < 150 * 1024


def test_playable_through_config_and_cli_and_its_cut_downloads(instant: GrokVideoEmulator) -> None:
    from airflow_grok_video.emulator.__main__ import _parser

    assert _parser().parse_args([]).playable is False and _parser().parse_args(["--playable"]).playable
    task_id = create(instant)
    assert len(get_video(instant, task_id)[2]) == instant.video_bytes
    status, answer = control(instant, "POST", "config", {"playable": "yes"})
    assert status == 400 and "playable" in answer["error"] and instant.playable is False
    assert control(instant, "POST", "config", {"playable": True}) == (200, {"ok": True})
    assert instant.playable is True
    video = get_video(instant, task_id)[2]  # an earlier task's download too
    assert video[4:8] == b"ftyp" and video.endswith(b"free" + task_id.encode())
    head, body = cut_download(instant, task_id)
    assert head.startswith(b"HTTP/1.1 200 OK") and f"Content-Length: {len(video)}".encode() in head
    assert body and video.startswith(body)
    assert get_video(instant, task_id)[2] == video  # the next download is whole
    head, body = cut_download(instant, task_id, "Range: bytes=1000-\r\n")
    assert head.startswith(b"HTTP/1.1 206 Partial Content")
    assert f"Content-Range: bytes 1000-{len(video) - 1}/{len(video)}".encode() in head
    assert body and video[1000:].startswith(body)


@pytest.mark.parametrize("playable", [False, True], ids=["synthetic", "playable"])
def test_video_byte_ranges(playable: bool) -> None:
    with GrokVideoEmulator(
        queue_seconds=0, generation_seconds=0, video_bytes=300_000, playable=playable
    ) as emu:
        task_id = create(emu)
        status, headers, whole = get_video(emu, task_id)
        size = len(whole)
        assert status == 200 and headers["Accept-Ranges"] == "bytes"
        for asked, (start, stop) in [
            ("bytes=0-99", (0, 100)),
            ("bytes=1000-", (1000, size)),
            ("bytes=-50", (size - 50, size)),
            ("bytes=5-999999999", (5, size)),  # the end is cut to the file's
            ("bytes=-999999999", (0, size)),
            (f"bytes={size - 1}-{size - 1}", (size - 1, size)),
        ]:
            status, headers, raw = get_video(emu, task_id, Range=asked)
            assert (status, headers["Content-Range"]) == (206, f"bytes {start}-{stop - 1}/{size}"), asked
            assert raw == whole[start:stop] and int(headers["Content-Length"]) == stop - start, asked
        for asked in [f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"]:
            status, headers, raw = get_video(emu, task_id, Range=asked)
            assert (status, headers["Content-Range"], raw) == (416, f"bytes */{size}", b""), asked
        # Ignored, as HTTP allows: several ranges, a reversed one, another unit, an If-Range.
        for extra in [
            {"Range": "bytes=0-1,5-6"},
            {"Range": "bytes=9-3"},
            {"Range": "items=0-1"},
            {"Range": "bytes=0-1", "If_Range": '"v1"'},
        ]:
            status, headers, raw = get_video(emu, task_id, **extra)
            assert (status, raw) == (200, whole) and "Content-Range" not in headers, extra
        head = urllib.request.Request(
            f"{emu.base_url}/videos/{task_id}.mp4", method="HEAD", headers={"Range": "bytes=10-19"}
        )
        with urllib.request.urlopen(head, timeout=10) as response:
            assert (response.status, response.headers["Content-Length"], response.read()) == (206, "10", b"")
        assert get_video(emu, "video_unknown", Range="bytes=0-1")[0] == 404
        statuses = [r.status for r in emu.requests if r.path.startswith(VIDEOS)]
        assert statuses == [200] + [206] * 6 + [416] * 3 + [200] * 4 + [206, 404]


# -- balance ----------------------------------------------------------------------------------------


def test_balance(emu: GrokVideoEmulator) -> None:
    emu.balance = 1
    create(emu)
    assert emu.balance == 0
    emu.add_rule(Rule(prompt_contains="fox", status_spelling="success", times=1))
    assert envelope(emu, "POST", CREATE, BODY) == (
        200,
        {"code": "40200", "msg": "insufficient balance", "data": None},
    )
    assert emu.accepted_creates == 1 and emu.creates == 2
    emu.balance = None
    task_id = create(emu)
    assert emu.tasks[task_id].rule is not None  # the refused create did not use the rule up


# -- faults -----------------------------------------------------------------------------------------


def test_status_fault_with_and_without_retry_after(emu: GrokVideoEmulator) -> None:
    emu.inject(Fault("status", status=429, retry_after=3, method="GET"))
    emu.inject(Fault("status", status=503, method="GET"))
    status, headers, raw = call(emu, "GET", QUERY + "x")
    assert (status, headers["Retry-After"]) == (429, "3")
    assert json.loads(raw) == {"code": "42900", "msg": "Too Many Requests", "data": None}
    status, headers, raw = call(emu, "GET", QUERY + "x")
    assert status == 503 and "Retry-After" not in headers and json.loads(raw)["code"] == "50300"


def test_html_and_envelope_faults(emu: GrokVideoEmulator) -> None:
    emu.inject(Fault("html", method="GET"))
    emu.inject(Fault("envelope", code="50001", msg="busy", path_prefix=QUERY))
    status, headers, raw = call(emu, "GET", QUERY + "x")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        json.loads(raw)
    assert envelope(emu, "GET", QUERY + "x") == (200, {"code": "50001", "msg": "busy", "data": None})


def test_faults_apply_in_fifo_order_and_are_used_up(emu: GrokVideoEmulator) -> None:
    html_twice = Fault("html", method="GET", times=2)
    emu.inject(Fault("status", status=429, retry_after=3, method="GET"))
    emu.inject(html_twice)
    emu.inject(Fault("status", status=500, method="POST"))  # not matched by the GETs
    emu.inject(Fault("envelope", code="50001", msg="busy", path_prefix=QUERY))
    statuses = [call(emu, "GET", QUERY + "x")[0] for _ in range(5)]
    assert statuses == [429, 200, 200, 200, 404]
    assert html_twice.times == 2  # the caller's fault is left alone
    assert envelope(emu, "POST", CREATE, BODY)[0] == 500
    assert envelope(emu, "POST", CREATE, BODY)[0] == 200
    assert [r.status for r in emu.requests] == [429, 200, 200, 200, 404, 500, 200]


def test_reset_fault_is_a_connection_error(emu: GrokVideoEmulator) -> None:
    emu.inject(Fault("reset", method="GET"))
    with pytest.raises(CONNECTION_ERRORS):
        call(emu, "GET", QUERY + "x")
    assert envelope(emu, "GET", QUERY + "x")[0] == 404  # the next connection works
    assert [r.status for r in emu.requests] == [0, 404]


def test_reset_fault_mid_download(instant: GrokVideoEmulator) -> None:
    task_id = create(instant)
    instant.inject(Fault("reset", path_prefix=VIDEOS))
    with pytest.raises(CONNECTION_ERRORS):
        call(instant, "GET", f"/videos/{task_id}.mp4")
    assert call(instant, "GET", f"/videos/{task_id}.mp4")[0] == 200


def test_slow_fault(emu: GrokVideoEmulator) -> None:
    emu.inject(Fault("slow", delay=0.5, method="GET"))
    started = time.monotonic()
    assert call(emu, "GET", QUERY + "x")[0] == 404
    assert time.monotonic() - started >= 0.5
    started = time.monotonic()
    assert call(emu, "GET", QUERY + "x")[0] == 404
    assert time.monotonic() - started < 0.4


def test_slow_create_accepts_before_answering(emu: GrokVideoEmulator) -> None:
    emu.inject(Fault("slow", delay=0.6, method="POST"))
    answer: list[str] = []
    thread = threading.Thread(target=lambda: answer.append(create(emu)))
    thread.start()
    time.sleep(0.3)
    assert emu.accepted_creates == 1 and not answer  # accepted and billed, the answer still pending
    thread.join(5)
    assert answer == list(emu.tasks)


@pytest.mark.parametrize(
    "fault",
    [
        Fault("status", status=502, method="POST", after_accept=True),
        Fault("html", method="POST", after_accept=True),
        Fault("envelope", code="50001", msg="busy", method="POST", after_accept=True),
        Fault("reset", method="POST", after_accept=True),
    ],
)
def test_create_fault_after_accept_bills_but_hides_the_id(emu: GrokVideoEmulator, fault: Fault) -> None:
    emu.balance = 5
    emu.inject(fault)
    try:
        status, _, raw = call(emu, "POST", CREATE, BODY)
    except CONNECTION_ERRORS:
        status, raw = 0, b""
    assert b"video_" not in raw
    assert {"status": 502, "html": 200, "envelope": 200, "reset": 0}[fault.kind] == status
    assert emu.accepted_creates == 1 and emu.balance == 4
    assert [r.status for r in emu.requests] == [status]


def test_create_fault_before_accept_bills_nothing(emu: GrokVideoEmulator) -> None:
    emu.inject(Fault("status", status=503, method="POST"))
    emu.inject(Fault("reset", method="POST"))
    assert envelope(emu, "POST", CREATE, BODY)[0] == 503
    with pytest.raises(CONNECTION_ERRORS):
        call(emu, "POST", CREATE, BODY)
    assert emu.accepted_creates == 0 and emu.creates == 2


def raw_call(
    emu: GrokVideoEmulator, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, str], bytes]:
    """One request that follows no redirect (``urllib`` would follow it)."""
    connection = http.client.HTTPConnection(emu.host, emu.port, timeout=10)
    try:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_redirect_fault_before_accept_bills_nothing(emu: GrokVideoEmulator) -> None:
    emu.inject(Fault("redirect", location="https://elsewhere.invalid/v1", method="POST"))
    status, headers, raw = raw_call(emu, "POST", CREATE, BODY)
    assert (status, headers["Location"]) == (302, "https://elsewhere.invalid/v1")
    assert b"video_" not in raw
    assert (emu.creates, emu.accepted_creates) == (1, 0)
    assert [r.status for r in emu.requests] == [302]


def test_redirect_fault_after_accept_bills_and_hides_the_id(emu: GrokVideoEmulator) -> None:
    emu.balance = 5
    emu.inject(Fault("redirect", status=303, location=QUERY + "somewhere", method="POST", after_accept=True))
    status, headers, raw = raw_call(emu, "POST", CREATE, BODY)
    assert (status, headers["Location"]) == (303, QUERY + "somewhere")
    assert b"video_" not in raw
    assert emu.accepted_creates == 1 and emu.balance == 4
    assert raw_call(emu, "POST", CREATE, BODY)[0] == 200  # used up


def test_redirect_fault_on_a_query_and_through_the_control_endpoint(emu: GrokVideoEmulator) -> None:
    fault = {"kind": "redirect", "status": 307, "location": "/elsewhere", "path_prefix": QUERY}
    assert control(emu, "POST", "faults", fault) == (200, {"ok": True})
    status, headers, _ = raw_call(emu, "GET", QUERY + "x")
    assert (status, headers["Location"]) == (307, "/elsewhere")
    assert emu.accepted_creates == 0


@pytest.mark.parametrize(
    "fields",
    [{"kind": "redirect"}, {"kind": "redirect", "location": "/x", "status": 200}],
)
def test_redirect_fault_needs_a_location_and_a_3xx(emu: GrokVideoEmulator, fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Fault(**fields)
    status, answer = control(emu, "POST", "faults", fields)
    assert status == 400 and answer["error"]


# -- the record and the control endpoints ----------------------------------------------------------


def test_record_and_count(emu: GrokVideoEmulator) -> None:
    before = time.time()
    task_id = create(emu)
    query(emu, task_id)
    call(emu, "GET", "/nowhere")
    control(emu, "GET", "stats")
    first = emu.requests[0]
    assert (first.method, first.path, first.json, first.status, first.auth_ok) == (
        "POST",
        CREATE,
        BODY,
        200,
        True,
    )
    assert before <= first.time <= time.time() and first.user_agent.startswith("Python-urllib")
    assert [(r.method, r.path, r.json, r.status) for r in emu.requests[1:]] == [
        ("GET", QUERY + task_id, None, 200),
        ("GET", "/nowhere", None, 404),
    ]
    assert (emu.count(), emu.count("get"), emu.count("GET", QUERY), emu.count(path_prefix=CREATE)) == (
        3,
        2,
        1,
        1,
    )
    assert (emu.creates, emu.accepted_creates) == (1, 1)
    emu.reset()
    assert (emu.requests, emu.tasks, emu.creates) == ([], {}, 0)


def test_control_endpoints(emu: GrokVideoEmulator) -> None:
    assert (
        control(emu, "POST", "config", {"generation_seconds": 0, "queue_seconds": 0, "balance": 2})[0] == 200
    )
    assert control(emu, "POST", "rules", {"prompt_contains": "doomed", "outcome": "failed"})[0] == 200
    assert control(emu, "POST", "faults", {"kind": "status", "status": 500, "method": "GET"})[0] == 200
    task_id = create(emu, prompt="doomed")
    assert envelope(emu, "GET", QUERY + task_id)[0] == 500
    assert query(emu, task_id)["status"] == "failed"
    assert control(emu, "GET", "stats") == (
        200,
        {"creates": 1, "accepted_creates": 1, "queries": 2, "tasks": {task_id: "failed"}},
    )
    _, recorded = control(emu, "GET", "requests")
    assert [(r["method"], r["status"], r["auth_ok"]) for r in recorded] == [
        ("POST", 200, True),
        ("GET", 500, True),
        ("GET", 200, True),
    ]
    assert recorded[0]["json"] == {**BODY, "prompt": "doomed"}
    assert emu.balance == 1
    assert control(emu, "POST", "reset") == (200, {"ok": True})
    assert emu.requests == [] and emu.tasks == {} and control(emu, "GET", "stats")[1]["creates"] == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("config", {"speed": 1}),
        ("config", {"balance": "lots"}),
        ("rules", {"outcome": "failed"}),
        ("faults", {"kind": "teapot"}),
        ("faults", [1]),
    ],
)
def test_control_rejects_bad_input(emu: GrokVideoEmulator, path: str, body: Any) -> None:
    status, answer = control(emu, "POST", path, body)
    assert status == 400 and answer["error"]


def test_stop_is_quick_with_a_request_in_flight() -> None:
    emu = GrokVideoEmulator()
    emu.start()
    emu.inject(Fault("slow", delay=30))
    outcome: list[object] = []

    def slow_call() -> None:
        try:
            outcome.append(call(emu, "GET", QUERY + "x")[0])
        except CONNECTION_ERRORS as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slow_call)
    thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    emu.stop()
    assert time.monotonic() - started < 3
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], CONNECTION_ERRORS)
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", emu.port)) != 0  # nothing listens any more


async def test_many_concurrent_keep_alive_clients(instant: GrokVideoEmulator) -> None:
    task_id = create(instant)
    url = instant.base_url + QUERY + task_id
    headers = {"Authorization": "Bearer sk_x"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def poll() -> list[int]:
            statuses = []
            for _ in range(3):
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    statuses.append(response.status)
            return statuses

        results = await asyncio.wait_for(asyncio.gather(*(poll() for _ in range(500))), timeout=15)
    assert all(statuses == [200, 200, 200] for statuses in results)
    assert instant.stats()["queries"] == 1500


# -- the command line --------------------------------------------------------------------------------


def test_cli_serves_until_sigterm() -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "airflow_grok_video.emulator",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    command += ["--generation-seconds", "0", "--queue-seconds", "0", "--api-key", "sk_cli", "--balance", "1"]
    command += ["--video-bytes", "1000"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line == f"Grok video emulator listening on http://127.0.0.1:{port}"
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{CREATE}",
            data=json.dumps(BODY).encode(),
            headers={"Authorization": "Bearer sk_cli"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            task_id = json.loads(response.read())["data"]["task_id"]
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["code"] == "40200"  # the balance of 1 is spent
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/videos/{task_id}.mp4", timeout=5) as response:
            assert len(response.read()) == 1000
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


# -- the package -----------------------------------------------------------------------------------


def test_the_package_names_its_classes_and_the_record_holds_them(instant: GrokVideoEmulator) -> None:
    import airflow_grok_video.emulator as package

    assert sorted(package.__all__) == [
        "EmulatedVideo",
        "Fault",
        "GrokVideoEmulator",
        "RecordedRequest",
        "Rule",
    ]
    task_id = create(instant)
    assert type(instant.tasks[task_id]) is EmulatedVideo
    assert [type(r) for r in instant.requests] == [RecordedRequest]


@pytest.mark.parametrize("cls", [EmulatedVideo, RecordedRequest], ids=lambda c: c.__name__)
def test_the_classes_handed_out_document_every_field(cls: type) -> None:
    doc = inspect.getdoc(cls) or ""
    missing = [name for name in inspect.signature(cls).parameters if f":param {name}:" not in doc]
    assert not missing, f"{cls.__name__} does not document {missing}"


def test_the_emulator_and_the_provider_do_not_import_each_other() -> None:
    code = """
import pathlib, sys
import airflow_grok_video.emulator
ours = sorted(m for m in sys.modules if m.startswith("airflow_grok_video.") and ".emulator" not in m)
print("imported:", ours)
root = pathlib.Path(airflow_grok_video.__file__).parent
for name in list(sys.modules):
    if name.startswith("airflow_grok_video.emulator"):
        del sys.modules[name]
for path in sorted(root.rglob("*.py")):
    parts = path.relative_to(root.parent).with_suffix("").parts
    if "emulator" not in parts:
        __import__(".".join(p for p in parts if p != "__init__"))
print("imported:", sorted(m for m in sys.modules if m.startswith("airflow_grok_video.emulator")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    # Only our lines: importing the whole package may log (Airflow configures logging on import).
    assert [line for line in out.splitlines() if line.startswith("imported:")] == ["imported: []"] * 2
