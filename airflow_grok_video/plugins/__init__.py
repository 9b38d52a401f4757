"""The Videos page in Airflow's UI (an Airflow plugin; see docs/videos-ui.md)."""
