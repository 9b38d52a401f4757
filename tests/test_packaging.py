"""The wheel a user installs: typed, registered with Airflow, without the tests."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_the_wheel_ships_py_typed_and_the_provider_entry_point(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("airflow_provider_grok_video-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "airflow_grok_video/py.typed" in names
    assert not [n for n in names if n.startswith("tests/")]
    [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[apache_airflow_provider]" in text
    assert "airflow_grok_video.get_provider_info:get_provider_info" in text


def test_provider_info_matches_airflows_schema_and_names_its_integration() -> None:
    import json

    import airflow
    import jsonschema

    from airflow_grok_video.get_provider_info import get_provider_info

    info = get_provider_info()
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    declared = {integration["integration-name"] for integration in info["integrations"]}
    used = {
        entry["integration-name"]
        for kind in ("hooks", "operators", "sensors", "triggers")
        for entry in info.get(kind, [])
    } | {info["transfers"][0]["source-integration-name"]}
    assert used <= declared
