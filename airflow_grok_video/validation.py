"""Check every create parameter against the API's documented rules before anything is sent.

An invalid create can still be billed, so nothing is sent until every rule here holds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

from airflow_grok_video.exceptions import GrokVideoValidationError

MODEL = "grok-imagine-video-1.5"
MODEL_ALIASES = {MODEL: MODEL, "grok-1.5": MODEL, "grok_1_5": MODEL}
DURATIONS = (10, 15)
RATIOS = ("16:9", "9:16", "1:1", "3:2", "2:3")
ORIENTATIONS = ("landscape", "portrait")


def build_create_body(
    *,
    prompt: Any,
    image_url: Any = None,
    image_urls: Any = None,
    duration: Any = 10,
    ratio: Any = None,
    orientation: Any = None,
    model: Any = MODEL,
) -> dict[str, Any]:
    """
    Validate the create parameters and return the JSON body of the create request.

    ``image_url``, ``ratio`` and ``orientation`` given as ``None`` or ``""`` count as not given
    (a template cannot render ``None``).

    :param prompt: the text prompt; must contain more than whitespace.
    :param image_url: one reference image URL (http or https).
    :param image_urls: a list of reference image URLs; with ``image_url``, exactly one in total.
    :param duration: 10 or 15 (seconds of video).
    :param ratio: one of ``16:9``, ``9:16``, ``1:1``, ``3:2``, ``2:3``.
    :param orientation: ``landscape`` or ``portrait``; not together with ``ratio``.
    :param model: ``grok-imagine-video-1.5`` or its aliases ``grok-1.5`` and ``grok_1_5``.
    :raises GrokVideoValidationError: naming the field, the value and what is allowed.
    """
    body: dict[str, Any] = {
        "model": _model(model),
        "prompt": _prompt(prompt),
        "image_urls": _image_urls(image_url, image_urls),
        "duration": _duration(duration),
    }
    ratio = _choice("ratio", ratio, RATIOS)
    orientation = _choice("orientation", orientation, ORIENTATIONS)
    if ratio is not None and orientation is not None:
        raise GrokVideoValidationError(
            "ratio/orientation",
            (ratio, orientation),
            "give ratio or orientation, not both (the API ignores orientation when ratio is set)",
        )
    if ratio is not None:
        body["ratio"] = ratio
    if orientation is not None:
        body["orientation"] = orientation
    return body


def _model(model: Any) -> str:
    if not isinstance(model, str) or model not in MODEL_ALIASES:
        raise GrokVideoValidationError(
            "model", model, f"must be {MODEL!r} (or its aliases 'grok-1.5', 'grok_1_5')"
        )
    return MODEL_ALIASES[model]


def _prompt(prompt: Any) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise GrokVideoValidationError("prompt", prompt, "must be a non-empty string (not only whitespace)")
    return prompt


def _image_urls(image_url: Any, image_urls: Any) -> list[str]:
    urls: list[Any] = []
    if image_url not in (None, ""):
        urls.append(_url("image_url", image_url))
    if image_urls is not None:
        if isinstance(image_urls, str) or not isinstance(image_urls, Sequence):
            raise GrokVideoValidationError("image_urls", image_urls, "must be a list of http(s) URL strings")
        urls.extend(_url("image_urls", url) for url in image_urls)
    if len(urls) != 1:
        raise GrokVideoValidationError(
            "image_url/image_urls", urls, "exactly one reference image URL is required in total"
        )
    return urls


def _url(field: str, url: Any) -> str:
    if not isinstance(url, str) or url != url.strip() or not is_http_url(url):
        raise GrokVideoValidationError(field, url, "must be an http:// or https:// URL string")
    return url


def is_http_url(url: str) -> bool:
    """
    Whether ``url`` parses as an http(s) URL with a host (and, if any, a valid port).

    :param url: the text to check.
    """
    try:
        parsed = urlparse(url)
        parsed.port  # noqa: B018 - reading it refuses a port that is not a number from 0 to 65535
    except ValueError:  # "http://[::1/x.png" (an unclosed IPv6 bracket), "http://h:x/" (a bad port)
        return False
    return parsed.scheme in ("http", "https") and bool(parsed.hostname)


def _duration(duration: Any) -> int:
    if isinstance(duration, bool) or not isinstance(duration, int) or duration not in DURATIONS:
        hint = " (a template renders a string: use render_template_as_native_obj=True)"
        raise GrokVideoValidationError(
            "duration", duration, "must be the integer 10 or 15" + (hint if isinstance(duration, str) else "")
        )
    return duration


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    if value not in allowed:
        raise GrokVideoValidationError(field, value, "must be one of " + ", ".join(map(repr, allowed)))
    return str(value)


#: The create's fields a batch item (or ``@task.grok_video``'s function) may give, each overriding
#: the task's argument of that name.
CREATE_FIELDS = ("prompt", "image_url", "image_urls", "duration", "ratio", "orientation", "model")
#: Fields that choose one thing together: giving one replaces every field of its group the task set
#: (an item's ``ratio`` replaces the task's ``orientation``, its ``image_urls`` the ``image_url``),
#: unless the item gives them too.
ONE_CHOICE = (("image_url", "image_urls"), ("ratio", "orientation"))


def create_fields(value: Any, *, name: str, prefix: str | None = None) -> dict[str, Any]:
    """
    The create fields ``value`` gives: a prompt (a ``str``), or a mapping of :data:`CREATE_FIELDS`.

    The values themselves are checked by :func:`build_create_body`, once merged over the task's.

    :param value: a prompt, or a mapping of the create's fields to their values.
    :param name: what ``value`` is, for messages (``items[3]``).
    :param prefix: put before a field's name in messages; ``name.`` unless given.
    :return: the fields to set over the task's, with ``None`` for each one it replaces (:data:`ONE_CHOICE`).
    :raises GrokVideoValidationError: naming ``name`` (or the field), the value and what is allowed.
    """
    allowed = f"must be the prompt (a str) or a mapping of the create's fields ({', '.join(CREATE_FIELDS)})"
    if isinstance(value, str):
        value = {"prompt": value}
    if not isinstance(value, Mapping):
        raise GrokVideoValidationError(name, value, allowed)
    prefix = f"{name}." if prefix is None else prefix
    for key, given in value.items():
        if key not in CREATE_FIELDS:
            raise GrokVideoValidationError(f"{prefix}{key}", given, f"not a create field; {name} {allowed}")
    fields = dict(value)
    for group in ONE_CHOICE:
        if any(field in fields for field in group):
            fields = dict.fromkeys(group) | fields
    return fields
