"""An auth manager for the Videos plugin's access tests: Airflow's simple one, with a restricted user."""

from __future__ import annotations

import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

#: The user who may read one DAG only, and that DAG (another through ``GROK_VIDEO_OUTSIDER_DAG``, as the
#: real-deployment test sets it for its second api-server).
OUTSIDER = "outsider"
OUTSIDER_DAG = os.environ.get("GROK_VIDEO_OUTSIDER_DAG") or "grok_ui_sensor"


class OneDagAuthManager(SimpleAuthManager):
    """Airflow's simple auth manager, except that :data:`OUTSIDER` may read :data:`OUTSIDER_DAG` alone."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        if user.get_name() == OUTSIDER:
            return method == "GET" and details is not None and details.id == OUTSIDER_DAG
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
