"""Every invalid create parameter is refused, clearly, before any request reaches the API."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_grok_video.emulator import GrokVideoEmulator
from airflow_grok_video.exceptions import GrokVideoValidationError
from airflow_grok_video.hooks.grok_video import GrokVideoHook
from airflow_grok_video.validation import build_create_body

GOOD: dict[str, Any] = {"prompt": "a fox in the snow", "image_url": "https://example.com/fox.png"}

INVALID = [
    # (overrides, field named in the error, text that says what is allowed)
    ({"model": "grok-2"}, "model", "grok-imagine-video-1.5"),
    ({"model": None}, "model", "grok-imagine-video-1.5"),
    ({"model": "GROK-1.5"}, "model", "aliases"),
    ({"prompt": ""}, "prompt", "non-empty"),
    ({"prompt": "   \n\t"}, "prompt", "non-empty"),
    ({"prompt": None}, "prompt", "non-empty"),
    ({"prompt": ["a fox"]}, "prompt", "non-empty string"),
    ({"prompt": 42}, "prompt", "non-empty string"),
    ({"image_url": None}, "image_url/image_urls", "exactly one"),
    ({"image_url": "ftp://example.com/fox.png"}, "image_url", "http"),
    ({"image_url": "example.com/fox.png"}, "image_url", "http"),
    ({"image_url": "file:///etc/passwd"}, "image_url", "http"),
    ({"image_url": "http://[::1/x.png"}, "image_url", "http"),  # an unclosed IPv6 bracket
    ({"image_url": "http://example.com:port/x.png"}, "image_url", "http"),
    ({"image_url": "https://:443/x.png"}, "image_url", "http"),
    ({"image_url": ["https://example.com/a.png"]}, "image_url", "http"),
    ({"image_url": None, "image_urls": []}, "image_url/image_urls", "exactly one"),
    ({"image_url": None, "image_urls": "https://example.com/a.png"}, "image_urls", "list"),
    (
        {"image_url": None, "image_urls": ["https://example.com/a.png", "https://example.com/b.png"]},
        "image_url/image_urls",
        "exactly one",
    ),
    ({"image_urls": ["https://example.com/b.png"]}, "image_url/image_urls", "exactly one"),
    ({"image_url": None, "image_urls": [None]}, "image_urls", "http"),
    ({"duration": 5}, "duration", "10 or 15"),
    ({"duration": 12}, "duration", "10 or 15"),
    ({"duration": "10"}, "duration", "render_template_as_native_obj"),
    ({"duration": 10.0}, "duration", "10 or 15"),
    ({"duration": True}, "duration", "10 or 15"),
    ({"duration": None}, "duration", "10 or 15"),
    ({"ratio": "4:3"}, "ratio", "'16:9', '9:16', '1:1', '3:2', '2:3'"),
    ({"ratio": "16x9"}, "ratio", "'16:9'"),
    ({"ratio": ["16:9"]}, "ratio", "'16:9'"),
    ({"orientation": "square"}, "orientation", "'landscape', 'portrait'"),
    ({"ratio": "9:16", "orientation": "portrait"}, "ratio/orientation", "not both"),
]


@pytest.mark.parametrize(("overrides", "field", "allowed"), INVALID)
def test_invalid_create_is_refused_before_any_request(
    emulator: GrokVideoEmulator, overrides: dict[str, Any], field: str, allowed: str
) -> None:
    params = {**GOOD, **overrides}
    with pytest.raises(GrokVideoValidationError) as info:
        GrokVideoHook().create_video(**params)
    message = str(info.value)
    assert info.value.field == field
    assert message.startswith(f"Invalid {field}=")
    assert allowed in message
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, {"model": "grok-imagine-video-1.5", "duration": 10}),
        ({"model": "grok-1.5"}, {"model": "grok-imagine-video-1.5"}),
        ({"model": "grok_1_5", "duration": 15}, {"model": "grok-imagine-video-1.5", "duration": 15}),
        ({"ratio": "1:1"}, {"ratio": "1:1"}),
        ({"orientation": "portrait", "ratio": ""}, {"orientation": "portrait"}),
        (
            {"image_url": None, "image_urls": ["http://example.com/x.png"]},
            {"image_urls": ["http://example.com/x.png"]},
        ),
        (
            {"image_url": "", "image_urls": ("http://example.com/x.png",)},
            {"image_urls": ["http://example.com/x.png"]},
        ),
    ],
)
def test_valid_parameters_build_the_documented_body(
    overrides: dict[str, Any], expected: dict[str, Any]
) -> None:
    body = build_create_body(**{**GOOD, **overrides})
    assert body.items() >= expected.items()
    assert len(body["image_urls"]) == 1
    assert not ("ratio" in body and "orientation" in body)


def test_error_names_field_value_and_allowed() -> None:
    with pytest.raises(GrokVideoValidationError) as info:
        build_create_body(**GOOD, duration=7)
    assert str(info.value) == "Invalid duration=7 (int): must be the integer 10 or 15."
