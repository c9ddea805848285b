"""A request's JSON body, the one way every lab route reads it: read as it comes and refused
(413) once past its route's limit, so a huge body is never held whole; then a JSON object,
or a 400 with a sentence (not JSON, not UTF-8, a 5000-digit integer, deep nesting)."""

from __future__ import annotations

import json
from typing import Any

from dlx.lab.runs import LabError


async def read_limited(request, limit: int, route: str | None = None) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes; `route` names the
    route whose own limit it is (POST /api/data's 2 MiB) in the message."""
    said = f" ({limit // (1024 * 1024)} MiB), the most {route} takes" if route else ""
    over = LabError(413, f"the request is over {limit:,} bytes{said}")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise over
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise over
        chunks.append(chunk)
    return b"".join(chunks)


def json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; a 400 with a sentence otherwise."""
    try:
        obj = json.loads(raw or b"{}")
    except (ValueError, RecursionError) as e:
        raise LabError(400, f"the request body is not JSON ({getattr(e, 'msg', type(e).__name__)})") from None
    if not isinstance(obj, dict):
        raise LabError(400, "the request body must be a JSON object")
    return obj
