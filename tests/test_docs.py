"""Every public class documents every parameter, so the generated reference is complete."""

from __future__ import annotations

import html
import inspect
import re
from pathlib import Path

import pytest

from airflow_grok_video.emulator import Fault, GrokVideoEmulator, Rule
from airflow_grok_video.hooks.grok_video import GrokVideoHook, RetryPolicy, VideoTask
from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from airflow_grok_video.polling import PollSchedule
from airflow_grok_video.sensors.grok_video import GrokVideoSensor
from airflow_grok_video.transfers.grok_video_to_storage import GrokVideoToStorageOperator
from airflow_grok_video.triggers.grok_video import GrokVideoTrigger

REPO = Path(__file__).resolve().parent.parent

PUBLIC = [
    GrokCreateVideoOperator,
    GrokVideoSensor,
    GrokVideoToStorageOperator,
    GrokVideoTrigger,
    GrokVideoHook,
    RetryPolicy,
    VideoTask,
    PollSchedule,
    GrokVideoEmulator,
    Rule,
    Fault,
]


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda c: c.__name__)
def test_every_parameter_is_documented(cls: type) -> None:
    doc = inspect.getdoc(cls) or ""
    params = [
        name
        for name, p in inspect.signature(cls).parameters.items()
        if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    missing = [name for name in params if f":param {name}:" not in doc]
    assert not missing, f"{cls.__name__} does not document {missing}"


@pytest.mark.parametrize(
    "method",
    [GrokVideoHook.create_video, GrokVideoHook.get_video_task, GrokVideoHook.aget_video_task],
    ids=lambda m: m.__name__,
)
def test_hook_methods_document_their_parameters(method: object) -> None:
    doc = inspect.getdoc(method) or ""
    params = [n for n in inspect.signature(method).parameters if n != "self"]  # type: ignore[arg-type]
    assert all(f":param {n}:" in doc for n in params), doc


def test_provider_info_imports_no_airflow() -> None:
    # Airflow calls get_provider_info() while it initializes: importing Airflow there would be circular.
    import subprocess
    import sys

    code = (
        "import sys; from airflow_grok_video.get_provider_info import get_provider_info; "
        "get_provider_info(); print(sorted(m for m in sys.modules if m.split('.')[0] == 'airflow'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_site_builds_strictly_with_every_example_included(tmp_path: Path) -> None:
    import subprocess
    import sys

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(site)],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    pages = {
        page.relative_to(site).as_posix(): html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
        for page in site.rglob("*.html")
    }
    left = [name for name, text in pages.items() if re.search(r"--8\s*<\s*--", text)]
    assert left == [], f"snippet includes left unexpanded in {left}"
    included = {
        "examples/index.html": [
            "grok_video_example",
            "grok_video_fan_out",
            "grok_video_create_and_wait",
            "grok_video_review",
        ],
        "quickstart/index.html": ["grok_video_example"],
        "keeping-videos/index.html": ["grok_video_keep", "grok_video_on_kept"],
        "review/index.html": ["grok_video_review"],
    }
    for page, dag_ids in included.items():
        text = pages[page]
        for dag_id in dag_ids:
            assert f"def {dag_id}(" in text, f"{page} lacks {dag_id}'s code"
        assert "GrokCreateVideoOperator(" in text, f"{page} shows no operator code"
