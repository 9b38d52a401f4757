"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point."""

from __future__ import annotations

from typing import Any

from airflow_grok_video import __version__

# Airflow reads this module while it initializes: it must not import Airflow (or anything that does).
#: The connection form: only the base URL, the API key and the HTTP extras are used.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "login", "port"],
    "relabeling": {"host": "Base URL", "password": "API Key"},
    "placeholders": {
        "host": "https://www.jimmyai.cn",
        "password": "sk_...",
        "extra": '{"proxies": {"https": "http://proxy:3128"}}',
    },
}


def get_provider_info() -> dict[str, Any]:
    """Describe this provider to Airflow: its package, connection type and classes."""
    return {
        "package-name": "airflow-provider-grok-video",
        "name": "Grok Video (Jimmy AI)",
        "description": "Generate videos with the Grok 1.5 video model through Jimmy AI's API.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Grok Video",
                "external-doc-url": "https://www.jimmyai.cn",
                "how-to-guide": [],
                "tags": ["service"],
            }
        ],
        "connection-types": [
            {
                "connection-type": "grok_video",
                "hook-class-name": "airflow_grok_video.hooks.grok_video.GrokVideoHook",
                "hook-name": "Grok Video",
                # Airflow 3.2+ reads the form from here; older versions call the hook's
                # get_ui_field_behaviour(), which returns the same.
                "ui-field-behaviour": {
                    "hidden-fields": list(UI_FIELD_BEHAVIOUR["hidden_fields"]),
                    "relabeling": dict(UI_FIELD_BEHAVIOUR["relabeling"]),
                    "placeholders": dict(UI_FIELD_BEHAVIOUR["placeholders"]),
                },
            }
        ],
        "extra-links": ["airflow_grok_video.links.grok_video.GrokVideoLink"],
        "hooks": [
            {
                "integration-name": "Grok Video",
                "python-modules": ["airflow_grok_video.hooks.grok_video"],
            }
        ],
        "operators": [
            {
                "integration-name": "Grok Video",
                "python-modules": [
                    "airflow_grok_video.operators.grok_video",
                    "airflow_grok_video.operators.grok_video_batch",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "Grok Video",
                "python-modules": ["airflow_grok_video.sensors.grok_video"],
            }
        ],
        "transfers": [
            {
                "source-integration-name": "Grok Video",
                "target-integration-name": "Object Storage",
                "python-module": "airflow_grok_video.transfers.grok_video_to_storage",
            }
        ],
        "triggers": [
            {
                "integration-name": "Grok Video",
                "python-modules": [
                    "airflow_grok_video.triggers.grok_video",
                    "airflow_grok_video.triggers.grok_video_batch",
                ],
            }
        ],
        "task-decorators": [
            {
                "class-name": "airflow_grok_video.decorators.grok_video.grok_video_task",
                "name": "grok_video",
            },
            {
                "class-name": "airflow_grok_video.decorators.grok_video_batch.grok_video_batch_task",
                "name": "grok_video_batch",
            },
        ],
    }
