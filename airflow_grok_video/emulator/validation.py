"""The create request's documented rules: a body is read into :class:`CreateParams` or refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MODEL = "grok-imagine-video-1.5"
MODEL_ALIASES = {MODEL: MODEL, "grok-1.5": MODEL, "grok_1_5": MODEL}
DURATIONS = (10, 15)
RATIOS = ("16:9", "9:16", "1:1", "3:2", "2:3")
ORIENTATIONS = {"landscape": "16:9", "portrait": "9:16"}


class InvalidCreate(Exception):
    """A create request breaks a documented rule; the text is ``<field>: <what is wrong>``."""


@dataclass(frozen=True)
class CreateParams:
    """
    A valid create request, normalized.

    :param model: the model's canonical name (aliases mapped).
    :param prompt: the prompt.
    :param image_url: the one reference image (``image_urls``, or the alias ``images``).
    :param duration: 10 or 15 seconds (10 when absent).
    :param ratio: the aspect ratio (``orientation`` mapped; ``16:9`` when neither is given).
    """

    model: str
    prompt: str
    image_url: str
    duration: int
    ratio: str


def parse_create(body: Any) -> CreateParams:
    """
    Read a create request's JSON body, as the API does.

    :param body: the parsed body (anything JSON gives, or ``None``).
    :raises InvalidCreate: the first rule it breaks.
    """
    if not isinstance(body, dict):
        raise InvalidCreate("body: must be a JSON object")
    return CreateParams(_model(body), _prompt(body), _image(body), _duration(body), _ratio(body))


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or model not in MODEL_ALIASES:
        raise InvalidCreate(f"model: must be {MODEL} (or grok-1.5, grok_1_5)")
    return MODEL_ALIASES[model]


def _prompt(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidCreate("prompt: required, a non-empty string")
    return prompt


def _image(body: dict[str, Any]) -> str:
    field, urls = "image_urls", body.get("image_urls")
    if urls in (None, []) and body.get("images") not in (None, []):
        field, urls = "images", body.get("images")
    if not isinstance(urls, list) or len(urls) != 1 or not isinstance(urls[0], str) or not urls[0].strip():
        raise InvalidCreate(f"{field}: exactly 1 reference image URL (a string) is required")
    return urls[0]


def _duration(body: dict[str, Any]) -> int:
    duration = body.get("duration")
    if duration is None:
        return DURATIONS[0]
    if isinstance(duration, bool) or not isinstance(duration, int) or duration not in DURATIONS:
        raise InvalidCreate("duration: must be the integer 10 or 15")
    return duration


def _ratio(body: dict[str, Any]) -> str:
    ratio = body.get("ratio")
    if ratio in (None, ""):
        return _orientation(body)
    if not isinstance(ratio, str) or ratio not in RATIOS:
        raise InvalidCreate(f"ratio: must be one of {', '.join(RATIOS)}")
    return ratio


def _orientation(body: dict[str, Any]) -> str:
    orientation = body.get("orientation")
    if orientation in (None, ""):
        return RATIOS[0]
    if not isinstance(orientation, str) or orientation not in ORIENTATIONS:
        raise InvalidCreate("orientation: must be landscape or portrait")
    return ORIENTATIONS[orientation]
