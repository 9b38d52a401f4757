"""Apache Airflow provider for the Grok 1.5 video model sold through Jimmy AI's API."""

from __future__ import annotations

__version__ = "0.1.0"
