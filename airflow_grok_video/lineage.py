"""
OpenLineage for the create operator and the transfer: the datasets and the generation facet.

Only the operators' ``get_openlineage_facets_on_*`` methods import this module, and only the
OpenLineage provider calls them: it needs that provider (``pip install
airflow-provider-grok-video[openlineage]``), and nothing else in the package imports it.

What goes into an event is built from URLs stripped of their user, password, query string and
fragment (a video URL's query may carry a signature), and from what a create request buys: never
from the connection's key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

from airflow.providers.common.compat.openlineage.facet import Dataset, RunFacet
from airflow.providers.openlineage.extractors import OperatorLineage
from attrs import define, field

from airflow_grok_video.hooks._envelope import QUERY_PATH

#: The key of :class:`GrokVideoGenerationRunFacet` in an event's ``run.facets``.
FACET_NAME = "grokVideoGeneration"
#: The ``$id`` of the facet's JSON schema, which ships in the package as :data:`SCHEMA_RESOURCE`: an
#: identifier (a URN), not a location, since the package has no public home to serve it from. The
#: facet's ``_schemaURL`` is this with the JSON pointer of the facet's definition.
SCHEMA_URL = "urn:airflow-provider-grok-video:schemas:GrokVideoGenerationRunFacet:1"
#: The schema's file inside the package, for ``importlib.resources.files("airflow_grok_video")``.
SCHEMA_RESOURCE = "schemas/GrokVideoGenerationRunFacet.json"


@define(init=False)
class GrokVideoGenerationRunFacet(RunFacet):
    """
    The ``grokVideoGeneration`` run facet: what video a task generated or kept (nothing secret).

    Its fields are named in camelCase, as OpenLineage facets name theirs.

    :param model: the model, e.g. ``grok-imagine-video-1.5``.
    :param seconds: the video's length in seconds (10 or 15): what a create buys.
    :param prompt: the text prompt.
    :param promptSha256: the prompt's SHA-256, hex.
    :param videoTaskId: the API's video task id, once the video exists.
    :param ratio: the aspect ratio asked for, if one was.
    :param orientation: the orientation asked for, if one was.
    :param sourceUrlExpiresAt: when the API's video URL stops working (ISO 8601, UTC), when known.
    """

    model: str
    seconds: int
    prompt: str
    promptSha256: str
    videoTaskId: str | None = field(default=None)
    ratio: str | None = field(default=None)
    orientation: str | None = field(default=None)
    sourceUrlExpiresAt: str | None = field(default=None)

    def __init__(
        self,
        *,
        model: str,
        seconds: int,
        prompt: str,
        promptSha256: str,
        videoTaskId: str | None = None,
        ratio: str | None = None,
        orientation: str | None = None,
        sourceUrlExpiresAt: str | None = None,
    ) -> None:
        self.__attrs_init__(  # attrs' own initializer: validators and the base facet's defaults
            model=model,
            seconds=seconds,
            prompt=prompt,
            promptSha256=promptSha256,
            videoTaskId=videoTaskId,
            ratio=ratio,
            orientation=orientation,
            sourceUrlExpiresAt=sourceUrlExpiresAt,
        )

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_URL}#/$defs/GrokVideoGenerationRunFacet"


def generation_facet(what: Mapping[str, Any]) -> GrokVideoGenerationRunFacet | None:
    """
    The facet of a video from what is known of it, in the shape of the ``purchase`` XCom.

    :param what: ``model``, ``seconds``, ``prompt`` and optionally ``prompt_sha256``, ``ratio``,
        ``orientation``, ``video_task_id`` and ``source_url_expires_at``: the create operator's
        ``purchase`` XCom (or what its request would buy), and the transfer's asset event extra.
    :return: ``None`` when ``what`` does not say what the video is (no model, seconds or prompt).
    """
    if any(what.get(key) is None for key in ("model", "seconds", "prompt")):
        return None
    prompt = str(what["prompt"])
    return GrokVideoGenerationRunFacet(
        model=str(what["model"]),
        seconds=int(what["seconds"]),
        prompt=prompt,
        promptSha256=str(what.get("prompt_sha256") or hashlib.sha256(prompt.encode()).hexdigest()),
        videoTaskId=_text(what.get("video_task_id")),
        ratio=_text(what.get("ratio")),
        orientation=_text(what.get("orientation")),
        sourceUrlExpiresAt=_text(what.get("source_url_expires_at")),
    )


def url_dataset(url: str) -> Dataset:
    """
    A dataset for a resource at an http(s) URL: namespace ``scheme://host[:port]``, name its path.

    The user, password, query string (which may carry a signature) and fragment are left out.

    :param url: the URL.
    """
    parts = urlsplit(url)
    return Dataset(namespace=_authority(url), name=parts.path or "/")


def video_task_dataset(base_url: str, video_task_id: str) -> Dataset:
    """
    The dataset of a video at the API: its query endpoint, ``/api/open-api/v1/videos/<id>``.

    :param base_url: the connection's base URL (a path in it prefixes the endpoint's).
    :param video_task_id: the API's video task id.
    """
    path = urlsplit(base_url).path.rstrip("/") + QUERY_PATH.format(task_id=quote(video_task_id, safe=""))
    return Dataset(namespace=_authority(base_url), name=path)


def stored_dataset(uri: str) -> Dataset:
    """
    The dataset of an object kept at ``uri``, as OpenLineage names the same Airflow asset.

    The storage's own provider converts the URI when it registers a converter for its scheme
    (``file`` with ``common-io``, ``s3`` with ``amazon``, ``gs`` with ``google``, ...); otherwise the
    namespace is ``scheme://bucket-or-host`` and the name the path within it.

    :param uri: the URI the object was stored at, as in its asset event.
    """
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset
    from airflow.sdk import Asset

    converted = translate_airflow_asset(Asset(uri), None)
    if converted is not None:
        return Dataset(namespace=converted.namespace, name=converted.name)
    parts = urlsplit(uri)
    if not parts.netloc:
        return Dataset(namespace=parts.scheme, name=parts.path)
    return Dataset(namespace=_authority(uri), name=parts.path.lstrip("/") or "/")


def lineage(
    inputs: list[Dataset], outputs: list[Dataset], facet: GrokVideoGenerationRunFacet | None
) -> OperatorLineage[Dataset, RunFacet]:
    """
    What a task reports: its inputs, its outputs and, when known, the generation facet.

    :param inputs: the datasets read.
    :param outputs: the datasets written.
    :param facet: the generation facet, or ``None``.
    """
    run_facets: dict[str, RunFacet] = {FACET_NAME: facet} if facet is not None else {}
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets=run_facets)


def _authority(url: str) -> str:
    """``scheme://host[:port]`` of a URL, without any user or password."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)
