"""Everything the create operator uses is checked before anything is bought: every argument, every extra.

A failing value means zero requests, read off the emulator's records. The lists below are checked
against the operator's signature and the connection's known extras, so a new argument or extra
without a check here fails the suite.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path
from typing import Any

import pytest

from airflow_grok_video.emulator import GrokVideoEmulator
from airflow_grok_video.hooks import _settings
from airflow_grok_video.operators.grok_video import GrokCreateVideoOperator
from tests.conftest import API_KEY
from tests.test_dags import run_dag, states
from tests.test_durable import tries

pytestmark = pytest.mark.usefixtures("airflow_db")

GOOD: dict[str, Any] = {
    "prompt": "a fox in the snow",
    "image_url": "https://example.com/fox.png",
    "wait_for_completion": True,
}

#: For each argument of the operator, a value that must be refused before any request.
BAD_ARGUMENTS: dict[str, Any] = {
    "prompt": "   ",
    "image_url": "ftp://example.com/fox.png",
    "image_urls": ["https://example.com/a.png", "https://example.com/b.png"],
    "duration": 7,
    "ratio": "4:3",
    "orientation": "sideways",
    "model": "grok-2",
    "grok_conn_id": "no_such_connection",
    "wait_for_completion": "yes",
    "poll_interval": -1,
    "timeout": None,
    "deferrable": "yes",
    "durable": "yes",
    "on_uncertain_create": "maybe",
    "max_poll_interval": -5,
    "spend_caps": {"videos_per_week": 3},
}

#: For each extra the connection reads, values that must be refused before any request.
BAD_EXTRAS: dict[str, list[Any]] = {
    "proxies": ["http://proxy:3128", {"http": "socks5://proxy:1080"}],
    "proxy": [{"https": 3128}],
    "verify": ["/no/such/ca-bundle.pem", "garbage"],
    "verify_ssl": [""],
    "cert": ["/no/such/client.pem", ["a", "b", "c"]],
    "timeout": [-1, [1], "soon"],
    "trust_env": ["maybe"],
    "price_per_second": [math.nan, math.inf, 1e308, -1, "0.05", True],
    "currency": [5],
    "resend_create_on_429": ["maybe", 1],
    "spend_caps": [{"videos_per_day": -1}, ["videos_per_day"], {"cost_per_day": 5}],
    "spend_cap_conn_id": [{"videos_per_day": 1}],
    "X-Header": ["a\nb"],
}


def use_connection(monkeypatch: pytest.MonkeyPatch, base_url: str, extra: dict[str, Any]) -> None:
    connection = {"conn_type": "grok_video", "host": base_url, "password": API_KEY, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_GROK_VIDEO_DEFAULT", json.dumps(connection))


def refused_before_any_request(emulator: GrokVideoEmulator, **arguments: Any) -> str:
    """Build the operator and run its pre-flight; return the error's text. Asserts nothing was sent."""
    try:
        operator = GrokCreateVideoOperator(task_id="create", **{**GOOD, **arguments})
        operator.preflight()
    except Exception as error:  # a refusal at parse time counts: nothing can be bought then either
        assert emulator.requests == []
        assert API_KEY not in str(error)
        return str(error)
    raise AssertionError(f"{arguments} passed the pre-flight")


def test_every_argument_has_a_bad_value_here() -> None:
    arguments = set(inspect.signature(GrokCreateVideoOperator.__init__).parameters) - {"self", "kwargs"}
    assert arguments == set(BAD_ARGUMENTS)


@pytest.mark.parametrize("name", list(BAD_ARGUMENTS))
def test_a_bad_argument_is_refused_before_anything_is_bought(emulator: GrokVideoEmulator, name: str) -> None:
    value = BAD_ARGUMENTS[name]
    message = refused_before_any_request(emulator, **{name: value})
    # It names the argument (or, for an unknown connection, the connection id given).
    assert name.split("_url")[0] in message or "poll interval" in message or str(value) in message


def test_every_extra_the_connection_reads_has_bad_values_here() -> None:
    read = _settings._OPTIONS | _settings.PROVIDER_EXTRAS
    assert read <= set(BAD_EXTRAS)


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, values in BAD_EXTRAS.items() for value in values]
)
def test_a_bad_extra_is_refused_before_anything_is_bought(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: Any
) -> None:
    base_url = emulator.base_url
    if value == "garbage":  # a CA bundle that exists but is not one: loaded as the triggerer loads it
        value = str(tmp_path / "bundle.pem")
        Path(value).write_text("not a certificate\n")
        base_url = "https://127.0.0.1:9"  # TLS, so the bundle is used; never contacted
    use_connection(monkeypatch, base_url, {name: value})
    message = refused_before_any_request(emulator)
    assert name.lower() in message.lower() or (name == "verify_ssl" and "verify" in message)


@pytest.mark.parametrize("price", [math.nan, math.inf, 1e308])
def test_a_price_that_would_crash_after_the_create_fails_before_it(
    emulator: GrokVideoEmulator, monkeypatch: pytest.MonkeyPatch, price: float
) -> None:
    use_connection(monkeypatch, emulator.base_url, {"price_per_second": price})
    run = run_dag("grok_test_create_retries")
    assert states(run) == {"create": "failed"}
    assert tries(run) == {-1: 1}
    assert emulator.creates == 0


def test_a_deferred_wait_without_a_timeout_fails_before_the_create(emulator: GrokVideoEmulator) -> None:
    run = run_dag("grok_test_wait_without_timeout")
    assert states(run) == {"create": "failed"}
    assert emulator.creates == 0
