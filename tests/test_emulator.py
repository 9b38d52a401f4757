"""The emulator itself over real HTTP: the documented API, its faults, its record and its CLI."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from airflow_grok_video.emulator import Fault, GrokVideoEmulator, Rule

CREATE = "/api/open-api/v1/grok/videos"
QUERY = "/api/open-api/v1/videos/"
KEY = "sk_emulator_test"
BODY: dict[str, Any] = {
    "model": "grok-1.5",
    "prompt": "a fox",
    "image_urls": ["https://example.com/fox.png"],
    "duration": 10,
}


def call(
    emu: GrokVideoEmulator, method: str, path: str, body: Any = None, key: str | None = KEY
) -> tuple[int, dict[str, str], bytes]:
    data = None if body is None else json.dumps(body).encode()
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


@pytest.fixture
def emu() -> Any:
    with GrokVideoEmulator(
        queue_seconds=0.2, generation_seconds=0.6, api_keys=[KEY], video_bytes=300_000
    ) as e:
        yield e


def test_auth(emu: GrokVideoEmulator) -> None:
    assert envelope(emu, "POST", CREATE, BODY, key=None) == (
        401,
        {"code": "40100", "msg": "invalid or missing API key", "data": None},
    )
    assert envelope(emu, "POST", CREATE, BODY, key="sk_other")[0] == 401
    assert envelope(emu, "POST", CREATE, BODY)[0] == 200
    assert [r.auth_ok for r in emu.requests] == [False, False, True]
    with GrokVideoEmulator() as any_sk:
        assert envelope(any_sk, "GET", QUERY + "x", key="sk_anything")[0] == 404
        assert envelope(any_sk, "GET", QUERY + "x", key="pk_anything")[0] == 401


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": "grok-2"}, "model"),
        ({"prompt": " "}, "prompt"),
        ({"image_urls": []}, "image_urls"),
        ({"image_urls": ["a", "b"]}, "image_urls"),
        ({"duration": 12}, "duration"),
        ({"duration": True}, "duration"),
        ({"ratio": "4:3"}, "ratio"),
        ({"orientation": "square"}, "orientation"),
    ],
)
def test_validation(emu: GrokVideoEmulator, change: dict[str, Any], field: str) -> None:
    status, answer = envelope(emu, "POST", CREATE, {**BODY, **change})
    assert status == 400 and answer["code"] == "40000" and answer["msg"].startswith(field)
    assert emu.accepted_creates == 0


def test_images_compat_field_and_alias(emu: GrokVideoEmulator) -> None:
    status, answer = envelope(emu, "POST", CREATE, {**BODY, "image_urls": [], "images": ["https://x/y.png"]})
    assert status == 200 and answer["data"]["model"] == "grok-imagine-video-1.5"
    assert answer["data"]["status"] == "queued"


def test_status_machine_progress_and_video(emu: GrokVideoEmulator) -> None:
    task_id = envelope(emu, "POST", CREATE, BODY)[1]["data"]["task_id"]
    seen: list[tuple[str, int]] = []
    while True:
        data = envelope(emu, "GET", QUERY + task_id)[1]["data"]
        seen.append((data["status"], data["progress"]))
        if data["status"] == "completed":
            break
        time.sleep(0.05)
    assert seen[0] == ("queued", 0)
    processing = [p for s, p in seen if s == "processing"]
    assert processing == sorted(processing) and all(1 <= p <= 99 for p in processing)
    assert data["progress"] == 100 and data["completed_at"] >= data["created_at"]
    assert data["result"]["video_url"] == f"{emu.base_url}/videos/{task_id}.mp4"
    status, headers, raw = call(emu, "GET", f"/videos/{task_id}.mp4", key=None)
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    assert int(headers["Content-Length"]) == len(raw) == 300_000
    assert raw[4:8] == b"ftyp"


def test_rules_failed_and_success_spelling(emu: GrokVideoEmulator) -> None:
    emu.add_rule(Rule(prompt_contains="doomed", outcome="failed", error_message="content policy"))
    emu.add_rule(Rule(prompt_contains="faq", status_spelling="success", generation_seconds=0))
    doomed = envelope(emu, "POST", CREATE, {**BODY, "prompt": "doomed"})[1]["data"]["task_id"]
    faq = envelope(emu, "POST", CREATE, {**BODY, "prompt": "faq"})[1]["data"]["task_id"]
    time.sleep(0.9)
    failed = envelope(emu, "GET", QUERY + doomed)[1]["data"]
    assert (failed["status"], failed["error_message"], failed["result"]) == ("failed", "content policy", None)
    assert envelope(emu, "GET", QUERY + faq)[1]["data"]["status"] == "success"
    assert call(emu, "GET", f"/videos/{doomed}.mp4")[0] == 404


def test_balance(emu: GrokVideoEmulator) -> None:
    emu.balance = 1
    assert envelope(emu, "POST", CREATE, BODY)[1]["code"] == "20000"
    assert envelope(emu, "POST", CREATE, BODY) == (
        200,
        {"code": "40200", "msg": "insufficient balance", "data": None},
    )
    assert emu.accepted_creates == 1 and emu.creates == 2


def test_faults_in_fifo_order_and_counted(emu: GrokVideoEmulator) -> None:
    emu.inject(Fault("status", status=429, retry_after=3, method="GET"))
    emu.inject(Fault("html", method="GET", times=2))
    emu.inject(Fault("envelope", code="50001", msg="busy", path_prefix=QUERY))
    status, headers, _ = call(emu, "GET", QUERY + "x")
    assert (status, headers["Retry-After"]) == (429, "3")
    for _ in range(2):
        status, headers, _ = call(emu, "GET", QUERY + "x")
        assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert envelope(emu, "GET", QUERY + "x") == (200, {"code": "50001", "msg": "busy", "data": None})
    assert envelope(emu, "GET", QUERY + "x")[0] == 404
    assert [r.status for r in emu.requests] == [429, 200, 200, 200, 404]


def test_reset_and_slow_faults(emu: GrokVideoEmulator) -> None:
    emu.inject(Fault("reset", method="GET"))
    with pytest.raises((ConnectionError, urllib.error.URLError, OSError, http.client.HTTPException)):
        call(emu, "GET", QUERY + "x")
    emu.inject(Fault("slow", delay=0.5, method="GET"))
    started = time.monotonic()
    assert call(emu, "GET", QUERY + "x")[0] == 404
    assert time.monotonic() - started >= 0.5
    assert [r.status for r in emu.requests] == [0, 404]


def test_create_fault_after_accept_bills_but_hides_the_id(emu: GrokVideoEmulator) -> None:
    emu.inject(Fault("status", status=502, method="POST", after_accept=True))
    assert envelope(emu, "POST", CREATE, BODY)[0] == 502
    assert emu.accepted_creates == 1
    emu.inject(Fault("status", status=503, method="POST"))
    assert envelope(emu, "POST", CREATE, BODY)[0] == 503
    assert emu.accepted_creates == 1 and emu.creates == 2


def test_control_endpoints(emu: GrokVideoEmulator) -> None:
    def control(method: str, path: str, body: Any = None) -> Any:
        return json.loads(call(emu, method, path, body, key=None)[2])

    control("POST", "/_emulator/config", {"generation_seconds": 0, "queue_seconds": 0})
    control("POST", "/_emulator/rules", {"prompt_contains": "doomed", "outcome": "failed"})
    control("POST", "/_emulator/faults", {"kind": "status", "status": 500, "method": "GET"})
    task_id = envelope(emu, "POST", CREATE, {**BODY, "prompt": "doomed"})[1]["data"]["task_id"]
    assert envelope(emu, "GET", QUERY + task_id)[0] == 500
    assert envelope(emu, "GET", QUERY + task_id)[1]["data"]["status"] == "failed"
    assert control("GET", "/_emulator/stats") == {
        "creates": 1,
        "accepted_creates": 1,
        "queries": 2,
        "tasks": {task_id: "failed"},
    }
    assert [r["status"] for r in control("GET", "/_emulator/requests")] == [200, 500, 200]
    control("POST", "/_emulator/reset")
    assert emu.requests == [] and emu.tasks == {}


def test_cli_serves_until_sigterm() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_grok_video.emulator",
            "--port",
            str(port),
            "--generation-seconds",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert process.stdout is not None
        assert (
            process.stdout.readline().strip() == f"Grok video emulator listening on http://127.0.0.1:{port}"
        )
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{CREATE}",
            data=json.dumps(BODY).encode(),
            headers={"Authorization": "Bearer sk_x"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["code"] == "20000"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
