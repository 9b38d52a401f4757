"""
Serve a kept video from wherever the transfer kept it, answering HTTP range requests.

A ``<video>`` element asks for ``Range: bytes=0-`` first and for later ranges when the viewer seeks;
each answer is ``206 Partial Content`` with the part asked for, read from the object store by seeking
(never the whole object in memory).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclasses.dataclass(frozen=True)
class ByteRange:
    """
    The bytes ``start`` to ``end`` (inclusive) of an object of ``size`` bytes.

    :param start: the first byte.
    :param end: the last byte.
    :param size: the whole object's size.
    """

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.end - self.start + 1

    def content_range(self) -> str:
        """The ``Content-Range`` header's value."""
        return f"bytes {self.start}-{self.end}/{self.size}"


class UnsatisfiableRange(ValueError):
    """A ``Range`` header no part of the object answers (HTTP 416)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """
    The one range a ``Range`` header asks for; ``None`` for the whole object.

    Several ranges in one header are answered with the whole object (a player never asks for more
    than one), as RFC 9110 allows.

    :param header: the request's ``Range`` header, if any.
    :param size: the object's size.
    :raises UnsatisfiableRange: when the range starts beyond the object, or is not a byte range.
    """
    if not header or "," in header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        raise UnsatisfiableRange(header)
    first, last = match.groups()
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(size - 1, int(last)) if last else size - 1
    if start >= size or start > end:
        raise UnsatisfiableRange(header)
    return ByteRange(start, end, size)


def open_kept(uri: str, conn_id: str | None) -> Any:
    """
    The kept object as an ``ObjectStoragePath`` (``file://``, ``s3://``, ...), through its connection.

    :param uri: the object's URI, as the transfer's asset event names it.
    :param conn_id: the storage connection the transfer wrote with, if any.
    """
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(uri, conn_id=conn_id) if conn_id else ObjectStoragePath(uri)


def read_range(path: Any, byte_range: ByteRange) -> Iterator[bytes]:
    """
    The bytes of ``byte_range`` from ``path``, in chunks of at most :data:`CHUNK`.

    :param path: an ``ObjectStoragePath``.
    :param byte_range: the part to read.
    """
    remaining = byte_range.length
    with path.open("rb") as stream:
        stream.seek(byte_range.start)
        while remaining > 0:
            chunk = stream.read(min(CHUNK, remaining))
            if not chunk:
                return
            remaining -= len(chunk)
            yield chunk
