"""OpenLineage: real Airflow runs report the image, the video and what it is; nothing breaks without it.

The example DAGs run with ``airflow dags test`` (every task executed by Airflow, against the emulator)
with the OpenLineage provider's file transport; the events it wrote are read back. Another run happens
in an environment where the OpenLineage provider is not installed at all.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from airflow_grok_video.emulator import GrokVideoEmulator, Rule
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.lineage import (
    SCHEMA_RESOURCE,
    GrokVideoGenerationRunFacet,
    url_dataset,
    video_task_dataset,
)
from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from tests.conftest import conn_json

pytestmark = pytest.mark.usefixtures("airflow_db")

KEY = "sk_OLKEY_3b9e61d0c4a7"
SIGNATURE = "Signature=OLSIG_5e2a90"
FACET = "grokVideoGeneration"
# The schema as the package ships it (the one copy; docs/lineage.md shows it).
SCHEMA = json.loads(files("airflow_grok_video").joinpath(SCHEMA_RESOURCE).read_text())
# What the example DAGs ask for.
KEEP_PROMPT = "Waves rolling onto a black sand beach at sunset"
EXAMPLE_PROMPT = "A red fox runs through fresh snow at dawn, cinematic"


@dataclass
class Run:
    """One ``airflow dags test`` of an example DAG, with the OpenLineage events it emitted."""

    api: str  # the emulator's base URL
    video_task_id: str
    events: list[dict[str, Any]]
    text: str  # the event file, whole
    output: str  # the command's stdout and stderr
    videos: Path  # where the keep example stores its video
    video_url: str  # the URL the API gave for the video: signed

    def event(self, task_id: str, event_type: str) -> dict[str, Any]:
        """The last event of ``event_type`` for task ``task_id``."""
        job = f".{task_id}"
        found = [e for e in self.events if e["eventType"] == event_type and e["job"]["name"].endswith(job)]
        seen = [(e["eventType"], e["job"]["name"]) for e in self.events]
        assert found, f"no {event_type} event for {task_id}: {seen}"
        return found[-1]


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def dags_test(python: str, dag_id: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "airflow", "dags", "test", dag_id],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def run_env(emulator: GrokVideoEmulator, events: Path, videos: Path) -> dict[str, str]:
    """The isolated Airflow's environment, the emulator as the connection, the file transport on."""
    return {
        **os.environ,
        "AIRFLOW_CONN_GROK_VIDEO_DEFAULT": conn_json(emulator.base_url, KEY),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        "AIRFLOW_VAR_GROK_VIDEO_DIR": str(videos),
    }


def run_with_lineage(dag_id: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run ``dag_id`` with ``airflow dags test`` against an emulator whose video URLs are signed."""
    events, videos = folder / "events.jsonl", folder / "videos"
    with GrokVideoEmulator(api_keys=[KEY], queue_seconds=0.2, generation_seconds=1.0) as emulator:
        emulator.add_rule(Rule(prompt_contains="", url_query=SIGNATURE))
        monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", conn_json(emulator.base_url, KEY))
        result = dags_test(sys.executable, dag_id, run_env(emulator, events, videos))
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        [video_task_id] = list(emulator.tasks)
        video_url = GrokVideoHook().get_video_task(video_task_id).video_url
    text = events.read_text()
    return Run(
        api=emulator.base_url,
        video_task_id=video_task_id,
        events=[json.loads(line) for line in text.splitlines() if line.strip()],
        text=text,
        output=output,
        videos=videos,
        video_url=str(video_url),
    )


@pytest.fixture(scope="module")
def keep_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The keep example: a deferred create-and-wait, then the transfer (with ``purchase``)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield run_with_lineage("grok_video_keep", tmp_path_factory.mktemp("ol-keep"), monkeypatch)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """The first example: a create that does not wait, then a deferrable sensor."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield run_with_lineage("grok_video_example", tmp_path_factory.mktemp("ol-example"), monkeypatch)


def assert_valid_facet(facet: dict[str, Any]) -> None:
    """The facet matches the JSON schema the package publishes, and names that schema."""
    import jsonschema

    own = SCHEMA["$defs"]["GrokVideoGenerationRunFacet"]["allOf"][1]
    jsonschema.validate(facet, own)
    assert set(facet) <= {*own["properties"], "_producer", "_schemaURL"}
    assert facet["_schemaURL"] == f"{SCHEMA['$id']}#/$defs/GrokVideoGenerationRunFacet"


def test_create_and_wait_reports_the_image_the_video_and_the_generation(keep_run: Run) -> None:
    complete = keep_run.event("make_video", "COMPLETE")
    assert names(complete["inputs"]) == [("https://example.com", "/images/beach.png")]
    assert names(complete["outputs"]) == [(keep_run.api, f"/api/open-api/v1/videos/{keep_run.video_task_id}")]
    facet = complete["run"]["facets"][FACET]
    assert_valid_facet(facet)
    assert {k: v for k, v in facet.items() if not k.startswith("_")} == {
        "model": "grok-imagine-video-1.5",
        "seconds": 10,
        "prompt": KEEP_PROMPT,
        "promptSha256": hashlib.sha256(KEEP_PROMPT.encode()).hexdigest(),
        "videoTaskId": keep_run.video_task_id,
    }
    # Before the create, START says what will be bought: the same, without a video.
    start = keep_run.event("make_video", "START")
    assert names(start["inputs"]) == names(complete["inputs"])
    assert start["outputs"] == []
    assert "videoTaskId" not in start["run"]["facets"][FACET]


def test_the_transfer_reports_the_video_it_read_and_the_object_it_stored(keep_run: Run) -> None:
    [stored] = list(keep_run.videos.glob("*.mp4"))
    complete = keep_run.event("keep_video", "COMPLETE")
    video_task = (keep_run.api, f"/api/open-api/v1/videos/{keep_run.video_task_id}")
    assert names(complete["inputs"]) == [(keep_run.api, f"/videos/{keep_run.video_task_id}.mp4"), video_task]
    # The same URI as the asset event, named as OpenLineage names a file:// asset; not the temporary name.
    assert names(complete["outputs"]) == [("file", str(stored))]
    facet = complete["run"]["facets"][FACET]
    assert_valid_facet(facet)
    assert facet["videoTaskId"] == keep_run.video_task_id
    assert facet["prompt"] == KEEP_PROMPT
    assert facet["sourceUrlExpiresAt"].endswith("+00:00")
    # The create's output is the transfer's input: the lineage graph links the two jobs.
    assert video_task in names(keep_run.event("make_video", "COMPLETE")["outputs"])


def test_a_create_that_does_not_wait_reports_its_video(example_run: Run) -> None:
    complete = example_run.event("create_video", "COMPLETE")
    assert names(complete["inputs"]) == [("https://example.com", "/images/fox.png")]
    assert names(complete["outputs"]) == [
        (example_run.api, f"/api/open-api/v1/videos/{example_run.video_task_id}")
    ]
    facet = complete["run"]["facets"][FACET]
    assert_valid_facet(facet)
    assert (facet["prompt"], facet["ratio"], facet["videoTaskId"]) == (
        EXAMPLE_PROMPT,
        "16:9",
        example_run.video_task_id,
    )


@pytest.mark.parametrize("run", ["keep_run", "example_run"])
def test_events_hold_neither_the_key_nor_the_signature(request: pytest.FixtureRequest, run: str) -> None:
    result: Run = request.getfixturevalue(run)
    assert result.events  # the file transport did write the run's events
    assert SIGNATURE in result.video_url  # the API's video URL was signed: the run handed it on
    assert KEY not in result.text
    assert "OLSIG" not in result.text
    assert KEY not in result.output


def test_datasets_leave_out_credentials_query_and_fragment() -> None:
    dataset = url_dataset("https://user:pw@cdn.example.com:8443/v/a.mp4?Signature=x&Expires=1#t=3")
    assert (dataset.namespace, dataset.name) == ("https://cdn.example.com:8443", "/v/a.mp4")
    video = video_task_dataset("https://gw.example.com/jimmy", "video/1 2")
    assert (video.namespace, video.name) == (
        "https://gw.example.com",
        "/jimmy/api/open-api/v1/videos/video%2F1%202",
    )


def test_the_facet_documents_every_field_and_its_schema_lists_them() -> None:
    import inspect

    fields = list(inspect.signature(GrokVideoGenerationRunFacet).parameters)
    doc = inspect.getdoc(GrokVideoGenerationRunFacet) or ""
    assert [name for name in fields if f":param {name}:" not in doc] == []
    schema = SCHEMA["$defs"]["GrokVideoGenerationRunFacet"]["allOf"][1]
    assert sorted(schema["properties"]) == sorted(fields)


def test_invalid_parameters_report_nothing_rather_than_failing() -> None:
    create = GrokCreateVideoOperator(
        task_id="c", prompt="a fox", image_url="https://example.com/f.png", duration=7
    )
    assert create.get_openlineage_facets_on_start().inputs == []
    assert create.get_openlineage_facets_on_complete(None).run_facets == {}


# -- without the OpenLineage provider ---------------------------------------------------------

#: What the ``openlineage`` extra installs: the provider and the OpenLineage client packages.
OPENLINEAGE_DISTRIBUTIONS = ("apache_airflow_providers_openlineage-", "openlineage")


@pytest.fixture(scope="module")
def python_without_openlineage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """
    A venv holding everything this one has but the OpenLineage provider and client.

    Built from the same interpreter, its site-packages links to each package installed here, this
    provider (editable) included, except those of the ``openlineage`` extra.
    """
    root = tmp_path_factory.mktemp("no-openlineage")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = str(root / "bin" / "python")
    target = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    source = Path(sysconfig.get_path("purelib"))
    for entry in source.iterdir():
        if entry.name == "airflow":
            link_airflow_without_openlineage(entry, target / "airflow")
        elif not entry.name.lower().startswith(OPENLINEAGE_DISTRIBUTIONS):
            (target / entry.name).symlink_to(entry)
    yield python


def link_airflow_without_openlineage(source: Path, target: Path) -> None:
    """``airflow/`` as links to its parts, but ``airflow/providers/`` without ``openlineage``."""
    target.mkdir()
    for entry in source.iterdir():
        if entry.name != "providers":
            (target / entry.name).symlink_to(entry)
    (target / "providers").mkdir()
    for provider in (source / "providers").iterdir():
        if provider.name != "openlineage":
            (target / "providers" / provider.name).symlink_to(provider)


def test_without_the_openlineage_provider_the_keep_example_runs(
    python_without_openlineage: str, tmp_path: Path
) -> None:
    probe = subprocess.run(
        [
            python_without_openlineage,
            "-c",
            "import importlib.metadata as m, importlib.util as u; "
            "print(u.find_spec('airflow.providers.openlineage'), u.find_spec('openlineage'), "
            "[d.metadata['Name'] for d in m.distributions() if 'openlineage' in d.metadata['Name'].lower()], "
            "m.version('airflow-provider-grok-video'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.split(" ", 3)[:3] == ["None", "None", "[]"]
    events, videos = tmp_path / "events.jsonl", tmp_path / "videos"
    with GrokVideoEmulator(api_keys=[KEY], queue_seconds=0.2, generation_seconds=1.0) as emulator:
        # The transport is configured: only the missing provider keeps events from being written.
        result = dags_test(python_without_openlineage, "grok_video_keep", run_env(emulator, events, videos))
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-4000:]
        assert emulator.creates == 1
    [stored] = list(videos.glob("*.mp4"))
    assert f"Video stored: file://{stored}" in output
    assert stored.stat().st_size == emulator.video_bytes
    assert not events.exists()


def test_importing_the_operators_imports_no_openlineage() -> None:
    def imported_after(modules: str) -> str:
        code = (
            f"import sys; import {modules}; "
            "print(sorted(m for m in sys.modules if 'openlineage' in m or m == 'airflow_grok_video.lineage'))"
        )
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout

    # Airflow itself reads every provider's get_provider_info; nothing of OpenLineage is imported by ours.
    baseline = imported_after("airflow.sdk, airflow.providers.common.compat.sdk")
    ours = imported_after(
        "airflow_grok_video.operators.grok_video, airflow_grok_video.transfers.grok_video_to_storage, "
        "airflow_grok_video.sensors.grok_video"
    )
    assert ours == baseline
    assert "airflow_grok_video.lineage" not in ours and "openlineage.client" not in ours
