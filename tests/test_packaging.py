"""What a user installs: `make dist`'s wheel and sdist, typed, registered, naming no made-up home."""

from __future__ import annotations

import email
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCHEMA = "airflow_grok_video/schemas/GrokVideoGenerationRunFacet.json"
# The GitHub repositories the docs may name: Airflow's (its constraint files, the OpenLineage
# provider's producer URL). The provider itself has no public home yet.
KNOWN_REPOSITORIES = {"apache/airflow"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make dist` run as a user runs it (in this venv, not reinstalling it): the wheel and sdist, checked."""
    out = tmp_path_factory.mktemp("dist")
    made = subprocess.run(
        ["make", "--no-print-directory", "-o", "install", "dist", f"VENV={sys.prefix}", f"DIST={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "1000"},  # twine's console would wrap its lines at 80
    )
    assert made.returncode == 0, made.stdout + made.stderr
    checked = re.findall(r"Checking (\S+): \S*PASSED", made.stdout)
    built = sorted(p.name for p in out.glob("airflow_provider*"))
    assert sorted(Path(name).name for name in checked) == built
    assert len(checked) == 2, made.stdout  # twine checked the wheel and the sdist
    return out


def wheel(dist: Path) -> Path:
    [found] = dist.glob("airflow_provider_grok_video-*.whl")
    return found


def test_the_wheel_ships_py_typed_the_facet_schema_and_the_provider_entry_point(dist: Path) -> None:
    with zipfile.ZipFile(wheel(dist)) as archive:
        names = archive.namelist()
        assert "airflow_grok_video/py.typed" in names
        assert SCHEMA in names
        assert not [n for n in names if n.startswith("tests/")]
        [entry_points] = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(entry_points).decode()
    assert "[apache_airflow_provider]" in text
    assert "airflow_grok_video.get_provider_info:get_provider_info" in text
    assert [n for n in dist.glob("airflow_provider_grok_video-*.tar.gz")], "make dist builds the sdist too"


def test_the_metadata_names_no_home_and_the_readme_is_its_description(dist: Path) -> None:
    with zipfile.ZipFile(wheel(dist)) as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(name))
    assert metadata.get_all("Project-URL") is None, metadata.get_all("Project-URL")
    assert metadata.get("Home-page") is None
    assert metadata.get("Description-Content-Type") == "text/markdown"
    assert "# airflow-provider-grok-video" in metadata.get_payload()


def repositories(text: str) -> set[str]:
    """The GitHub repositories a text names (github.com, raw.githubusercontent.com, git+ URLs)."""
    named = r"github(?:usercontent)?\.com[/:]([\w.-]+/[\w.-]+?)(?:\.git)?(?=[/@#\"'`\s)]|$)"
    return set(re.findall(named, text))


def test_no_file_a_user_reads_names_a_repository_that_does_not_exist(dist: Path) -> None:
    texts = {str(p.relative_to(REPO)): p.read_text() for p in [REPO / "README.md", REPO / "mkdocs.yml"]}
    texts |= {str(p.relative_to(REPO)): p.read_text() for p in (REPO / "docs").glob("*.md")}
    with zipfile.ZipFile(wheel(dist)) as archive:
        for name in archive.namelist():
            if name.endswith((".py", ".json", ".txt", "METADATA")):
                texts[f"wheel:{name}"] = archive.read(name).decode()
    named = {where: repositories(text) - KNOWN_REPOSITORIES for where, text in texts.items()}
    assert {where: sorted(repos) for where, repos in named.items() if repos} == {}
    assert repositories("pip install git+https://github.com/someone/thing@v1") == {"someone/thing"}


def test_the_facet_schema_is_named_by_an_identifier_not_a_host(dist: Path) -> None:
    # The facet's _schemaURL is this $id and a pointer (checked on real events in test_openlineage).
    with zipfile.ZipFile(wheel(dist)) as archive:
        schema = json.loads(archive.read(SCHEMA))
    assert schema["$id"].startswith("urn:airflow-provider-grok-video:"), schema["$id"]
    assert f"`{schema['$id']}`" in docs_lineage(), "the lineage page names the schema's $id"


def test_the_documented_command_prints_the_schema_from_an_installed_wheel(dist: Path, tmp_path: Path) -> None:
    # docs/lineage.md tells OpenLineage consumers how to get the schema: run that very command
    # against the wheel installed on its own (not this checkout).
    [command] = re.findall(r'^python -c "(from importlib\.resources import [^"]+)"', docs_lineage(), re.M)
    target = tmp_path / "site"
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"]
    subprocess.run(
        [*pip, "--target", str(target), str(wheel(dist))],
        check=True,
        capture_output=True,
    )
    installed = f"import airflow_grok_video as p; assert p.__file__.startswith({str(target)!r})"
    probe = f"{installed}; {command}"
    printed = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {probe}"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    with zipfile.ZipFile(wheel(dist)) as archive:
        assert json.loads(printed) == json.loads(archive.read(SCHEMA))


def docs_lineage() -> str:
    return (REPO / "docs" / "lineage.md").read_text()


def test_provider_info_matches_airflows_schema_and_names_its_integration() -> None:
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


def test_make_install_compiles_the_environments_bytecode() -> None:
    # Where PYTHONDONTWRITEBYTECODE is set (these machines, CI), Python never writes bytecode: without
    # it compiled at install, every Airflow process (each test's subprocess, each component of a
    # deployment) compiled Airflow's ~2,000 modules from source again, about 6 s of CPU each.
    import importlib.util

    import airflow.sdk.execution_time.supervisor as module

    compiled = Path(importlib.util.cache_from_source(module.__file__))
    assert compiled.is_file(), f"{compiled}: make install compiles with uv's --compile-bytecode"
