"""pytest fixtures for testing your own DAGs against the bundled emulator.

pytest loads this plugin by itself wherever the provider is installed (entry point ``pytest11``,
named ``airflow_grok_video.pytest_plugin``; ``-p no:airflow_grok_video.pytest_plugin`` turns it
off). It gives:

- ``grok_video_emulator``: a fresh emulator on 127.0.0.1 for each test, wired up as the
  ``grok_video_default`` connection through ``AIRFLOW_CONN_GROK_VIDEO_DEFAULT``;
- ``grok_video_airflow``: an Airflow of the test session's own (an isolated ``AIRFLOW_HOME``, its
  SQLite database migrated once), whose DAG folder holds your DAG files, so that ``dag.test()``
  runs them.

Airflow reads its configuration when it is first imported, so the isolated home must be set up
before anything imports Airflow: name your DAG folder in the pytest configuration
(``grok_video_dags = ["dags"]`` under ``[tool.pytest.ini_options]``), or call
:func:`isolate_airflow` at the top of your ``conftest.py``. Loading this plugin imports neither
Airflow nor the emulator; the fixtures import them when a test asks for them. Nothing the provider
runs in Airflow imports this module.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow_grok_video.emulator import GrokVideoEmulator

#: The API key of the ``grok_video_emulator`` fixture's connection (the emulator takes any ``sk_...``).
DEFAULT_API_KEY = "sk_test_grok_video_emulator"
#: The ``grok_video_emulator`` fixture's settings: a video is queued 0.2 s, then generates for 1 s.
DEFAULT_EMULATOR_OPTIONS: Mapping[str, Any] = {"queue_seconds": 0.2, "generation_seconds": 1.0}
#: The environment variable that defines the ``grok_video_default`` connection.
CONNECTION_ENV = "AIRFLOW_CONN_GROK_VIDEO_DEFAULT"
_INI = "grok_video_dags"


def connection_json(base_url: str, api_key: str = DEFAULT_API_KEY) -> str:
    """
    A ``grok_video`` connection as Airflow reads it from an ``AIRFLOW_CONN_...`` variable.

    :param base_url: the API's base URL, e.g. an emulator's ``base_url``.
    :param api_key: the key the connection carries.
    """
    return json.dumps({"conn_type": "grok_video", "host": base_url, "password": api_key})


class AirflowHome:
    """
    The isolated Airflow that :func:`isolate_airflow` set up for this test process.

    :param home: the ``AIRFLOW_HOME``; its ``airflow.db`` is the SQLite metadata database.
    :param dags_folder: the DAG folder (``[core] dags_folder``): the DAG files ``dag.test()`` can run.
    :param dags: the files and folders the DAG folder was made from.
    """

    def __init__(self, home: Path, dags_folder: Path, dags: tuple[Path, ...]) -> None:
        self.home = home
        self.dags_folder = dags_folder
        self.dags = dags
        self._bag: Any = None

    def __repr__(self) -> str:
        return f"AirflowHome(home={str(self.home)!r}, dags_folder={str(self.dags_folder)!r})"

    def dag_bag(self) -> Any:
        """The DAG folder parsed once (Airflow's ``DagBag``); fails on any import error."""
        if self._bag is None:
            try:
                from airflow.dag_processing.dagbag import DagBag
            except ImportError:  # Airflow < 3.2
                from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

            bag = DagBag(dag_folder=str(self.dags_folder))
            if bag.import_errors:
                pytest.fail(f"DAG files that do not import: {bag.import_errors}", pytrace=False)
            self._bag = bag
        return self._bag

    def dag(self, dag_id: str) -> Any:
        """
        The DAG ``dag_id`` from the DAG folder, ready for ``dag.test()``.

        :param dag_id: the DAG's id.
        """
        dags = self.dag_bag().dags
        if dag_id not in dags:
            pytest.fail(f"No DAG {dag_id!r} in {self.dags_folder}; it holds {sorted(dags)}", pytrace=False)
        return dags[dag_id]


_isolated: AirflowHome | None = None


def isolate_airflow(
    dags: Iterable[str | os.PathLike[str]] = (), *, home: str | os.PathLike[str] | None = None
) -> AirflowHome:
    """
    Point this process's Airflow at a home of its own; call it before anything imports Airflow.

    Sets ``AIRFLOW_HOME``, ``AIRFLOW_CONFIG``, the DAG folder, a SQLite database in the home (whatever
    ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` said) and no example DAGs, in ``os.environ``. Airflow's
    ``dag.test()`` runs only DAGs whose file is in the DAG folder: one folder given is the DAG folder
    itself; otherwise the DAG folder is made in the home, of links to each file given and to the
    ``*.py`` files (``__init__.py`` aside) at the top of each folder given. A second call with the
    same ``dags`` returns the same home.

    :param dags: the DAG files, or folders of them, your tests run.
    :param home: the ``AIRFLOW_HOME`` to use (kept afterwards); by default a new temporary folder,
        removed when the process ends.
    :raises RuntimeError: when Airflow was imported already (it has read its configuration), or
        this process was isolated before with other ``dags``.
    """
    global _isolated
    paths = tuple(Path(p).resolve() for p in dags)
    if _isolated is not None:
        if paths != _isolated.dags:
            raise RuntimeError(
                f"Airflow is isolated already, with the DAGs {[str(p) for p in _isolated.dags]}"
            )
        return _isolated
    if "airflow" in sys.modules:
        raise RuntimeError(
            "Airflow was imported before isolate_airflow() ran, so it has read its configuration already: "
            "call isolate_airflow() at the top of conftest.py, before importing Airflow or your DAGs, or "
            f'name the DAG folder in the pytest configuration ({_INI} = ["dags"])'
        )
    for path in paths:
        if not path.exists():
            raise RuntimeError(f"No such DAG file or folder: {path}")
    if home is None:
        root = Path(tempfile.mkdtemp(prefix="grok-video-airflow-"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
    else:
        root = Path(home).resolve()
        root.mkdir(parents=True, exist_ok=True)
    if len(paths) == 1 and paths[0].is_dir():
        dags_folder = paths[0]
    else:
        dags_folder = root / "dags"
        dags_folder.mkdir(exist_ok=True)
        for path in paths:
            files = sorted(path.glob("*.py")) if path.is_dir() else [path]
            for dag_file in files:
                if dag_file.name != "__init__.py":
                    link = dags_folder / dag_file.name
                    if link.exists() or link.is_symlink():
                        raise RuntimeError(f"Two DAG files named {dag_file.name}: rename one")
                    link.symlink_to(dag_file)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(root),
            "AIRFLOW_CONFIG": str(root / "airflow.cfg"),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{root / 'airflow.db'}",
        }
    )
    _isolated = AirflowHome(root, dags_folder, paths)
    return _isolated


def migrate_database() -> None:
    """Create (or upgrade) the isolated home's metadata database with ``airflow db migrate``."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
    )
    if result.returncode:
        pytest.fail(f"airflow db migrate failed:\n{result.stdout}\n{result.stderr}", pytrace=False)


# -- hooks ------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``grok_video_dags`` setting."""
    parser.addini(
        _INI,
        type="linelist",
        default=[],
        help="DAG files or folders (relative to the configuration file) for grok_video_airflow's "
        "isolated Airflow; set up before conftest.py files are imported",
    )


def _isolate_from_ini(config: pytest.Config) -> None:
    names = config.getini(_INI)
    if not names or _isolated is not None:
        return
    base = config.inipath.parent if config.inipath else config.rootpath
    try:
        isolate_airflow([base / name for name in names])
    except RuntimeError as error:
        raise pytest.UsageError(f"{_INI}: {error}") from None


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> None:
    """Isolate Airflow before any ``conftest.py`` can import it, when ``grok_video_dags`` is set."""
    _isolate_from_ini(early_config)


def pytest_configure(config: pytest.Config) -> None:
    """The same, when the plugin came through ``pytest_plugins`` rather than its entry point."""
    _isolate_from_ini(config)


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def grok_video_airflow() -> AirflowHome:
    """
    The session's isolated Airflow, its database migrated: ``grok_video_airflow.dag(dag_id).test()``.

    Needs ``grok_video_dags`` in the pytest configuration, or :func:`isolate_airflow` called in
    ``conftest.py``, so that Airflow was pointed at it before it was imported.
    """
    if _isolated is None:
        pytest.fail(
            "grok_video_airflow needs an Airflow isolated before Airflow is imported: set "
            f'{_INI} = ["dags"] (your DAG folder) under [tool.pytest.ini_options], or call '
            "airflow_grok_video.pytest_plugin.isolate_airflow([...]) at the top of conftest.py",
            pytrace=False,
        )
    migrate_database()
    return _isolated


@pytest.fixture
def grok_video_api_key() -> str:
    """The API key of the emulator fixture's connection; override this fixture to use another."""
    return DEFAULT_API_KEY


@pytest.fixture
def grok_video_emulator_options() -> Mapping[str, Any]:
    """Keyword arguments of the emulator fixture's ``GrokVideoEmulator``; override to change them."""
    return DEFAULT_EMULATOR_OPTIONS


@pytest.fixture
def grok_video_emulator(
    monkeypatch: pytest.MonkeyPatch, grok_video_api_key: str, grok_video_emulator_options: Mapping[str, Any]
) -> Iterator[GrokVideoEmulator]:
    """A fresh emulator on 127.0.0.1, wired up as the ``grok_video_default`` connection."""
    from airflow_grok_video.emulator import GrokVideoEmulator

    with GrokVideoEmulator("127.0.0.1", 0, **grok_video_emulator_options) as emulator:
        monkeypatch.setenv(CONNECTION_ENV, connection_json(emulator.base_url, grok_video_api_key))
        yield emulator
