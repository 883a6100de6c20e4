"""What the document exports share (an incident's report, an exercise's evaluation): the
format check, the OpenAPI answers, and the response with its file name and HTML policy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import HTTPException, status
from fastapi.responses import Response


def responses(what: str, *, forbidden: str, missing: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI answers of an export route."""
    return {
        200: {
            "content": {"application/json": {}, "text/html": {}, "application/pdf": {}},
            "description": f"the {what} in the asked format",
        },
        403: {"description": forbidden},
        404: {"description": missing},
        406: {"description": "a format not offered"},
    }


def offered(format_: str, formats: Sequence[str]) -> str:
    """``format_`` when it is one of ``formats``; otherwise 406 naming them."""
    if format_ not in formats:
        raise HTTPException(
            status.HTTP_406_NOT_ACCEPTABLE,
            f"formatet tilbys ikke / format not offered: {', '.join(formats)}",
        )
    return format_


def html_policy(style_hash: str) -> str:
    """A served HTML document's own policy: its one inline stylesheet and data: images."""
    return (
        f"default-src 'none'; style-src {style_hash}; img-src data:; "
        "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def document(
    body: bytes, *, fmt: str, name: str, media_types: Mapping[str, str], style_hash: str
) -> Response:
    """The rendered document: a PDF as an attachment, the others inline."""
    disposition = "attachment" if fmt == "pdf" else "inline"
    headers = {"Content-Disposition": f'{disposition}; filename="{name}"'}
    if fmt == "html":
        headers["Content-Security-Policy"] = html_policy(style_hash)
    return Response(body, media_type=media_types[fmt], headers=headers)
