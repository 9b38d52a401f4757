"""Which layer imports which: the model of a video task stands without the HTTP layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def modules_loaded_by(module: str) -> list[str]:
    """The package's modules in ``sys.modules`` after importing ``module`` in a fresh interpreter."""
    # Run from the checkout's root, so that it is this checkout's package that is imported.
    script = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('airflow_grok_video'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120, check=True
    )
    loaded: list[str] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def test_the_model_layer_does_not_import_the_http_layer() -> None:
    # What a video task is (video_task) is read by the hook, the sensor and the trigger; it must not
    # reach back up into the HTTP layer (airflow_grok_video.hooks), which builds on it.
    loaded = modules_loaded_by("airflow_grok_video.video_task")
    assert "airflow_grok_video.video_task" in loaded
    assert [
        m for m in loaded if m == "airflow_grok_video.hooks" or m.startswith("airflow_grok_video.hooks.")
    ] == []
