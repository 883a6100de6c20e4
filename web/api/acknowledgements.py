"""Acknowledgements: the confirmation page behind a message's link, and replies by SMS.

Link scanners in e-mail open every link, so ``GET …/ack/{code}`` only shows the message and
a button; the button POSTs to the same address, and only that confirms. The inbound webhook
takes an SMS gateway's report of a reply (Twilio's form, or JSON ``{from, to, text}``) and
confirms the messages whose codes it carries. The 96-bit code is the credential.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, Response
from jinja2 import Environment, Template
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.log.models import Incident
from notifiers import service
from notifiers.models import MessageStatus, OutboxMessage
from web.api.notifications import notify_config
from web.board.pages import oslo
from web.deps import SessionDep, read_body

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
log = logging.getLogger("crisis.web.acknowledgements")

#: A code as ``secrets.token_urlsafe(12)`` makes it: 16 characters of the URL-safe alphabet.
CODE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{16}(?![A-Za-z0-9_-])")
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM = "application/x-www-form-urlencoded"
MAX_INBOUND_BYTES = 65_536
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}

PAGE = """<!doctype html>
<html lang="nb">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{ nb }} / {{ en }}</title>
<style>
*{box-sizing:border-box}html{-webkit-text-size-adjust:100%}
body{font-family:system-ui,sans-serif;max-width:40rem;margin:0 auto;padding:1rem;line-height:1.4}
body{font-size:1.05rem;overflow-wrap:anywhere}h1{font-size:1.5rem;margin:.5rem 0 1rem}
.en{color:#555}dt{font-weight:600}dd{margin:0 0 .6rem}
.body{white-space:pre-wrap;background:#f4f4f4;border-left:4px solid #555;padding:.6rem;margin:0}
button{font:inherit;font-size:1.3rem;font-weight:700;width:100%;min-height:3.5rem}
button{padding:.8rem 1rem;cursor:pointer;border-radius:.5rem;border:0}
button{background:#0b5394;color:#fff;margin:1rem 0}
.done{color:#0a6b2d;font-weight:600;font-size:1.2rem}.error{color:#a40000;font-weight:600}
.exercise{background:#5b2a86;color:#fff;padding:.5rem .6rem;font-weight:700;text-align:center}
</style>
</head>
<body>
<main>
{% if message and message.exercise %}<p class="exercise">ØVELSE / EXERCISE</p>{% endif %}
<h1>{{ nb }} <span class="en" lang="en">/ {{ en }}</span></h1>
{% if message %}
<dl>
<dt>Hendelse <span class="en" lang="en">/ Incident</span></dt>
<dd id="incident">{{ incident }}</dd>
<dt>Melding <span class="en" lang="en">/ Message</span></dt>
<dd id="title">{{ message.title }}</dd>
<dt>Gruppe <span class="en" lang="en">/ Group</span></dt>
<dd id="group">{{ group_nb }} <span class="en" lang="en">/ {{ group_en }}</span></dd>
<dt>Mottaker <span class="en" lang="en">/ Recipient</span></dt>
<dd id="recipient">{{ message.recipient }}</dd>
<dt>Sendt <span class="en" lang="en">/ Sent</span></dt>
<dd id="sent">{{ sent }}</dd>
</dl>
{% endif %}
{% if state == "confirm" %}
<form method="post"><button type="submit" id="confirm">Bekreft / Confirm</button></form>
<p class="body" id="body">{{ message.body }}</p>
{% elif state in ("done", "already") %}
<p class="done" id="confirmed">{{ "Allerede bekreftet" if state == "already" else "Bekreftet" }}
<span lang="en">/ {{ "already confirmed" if state == "already" else "confirmed" }}</span>
{{ acknowledged }}{% if message.acknowledged_by %} ({{ message.acknowledged_by }}){% endif %}</p>
{% else %}
<p class="error" id="error">{{ error_nb }} <span lang="en">/ {{ error_en }}</span></p>
{% endif %}
</main>
</body>
</html>
"""


#: Stakeholder groups and message states as the recipient reads them (bokmål, English).
GROUPS = {
    "staff": ("ansatte", "staff"),
    "leaders": ("ledere", "leaders"),
    "safety": ("verneombud", "safety representatives"),
    "unions": ("tillitsvalgte", "unions"),
    "inmates": ("innsatte", "inmates"),
    "ministry": ("departementet (JD)", "the ministry (JD)"),
    "families": ("pårørende", "families"),
    "media": ("media", "media"),
    "public": ("publikum", "the public"),
    "cooperating": ("samvirkeaktører", "cooperating actors"),
}
STATUS_NB = {
    "pending": "i kø",
    "awaiting_approval": "venter på godkjenning",
    "held": "holdt tilbake",
    "failed": "feilet",
    "blocked": "stoppet",
    "cancelled": "avbrutt",
}


@lru_cache(maxsize=1)
def _page() -> Template:
    return Environment(autoescape=True).from_string(PAGE)


async def _message(session: AsyncSession, code: str) -> OutboxMessage | None:
    found = await session.exec(select(OutboxMessage).where(OutboxMessage.ack_code == code))
    return found.first()


async def _render(
    session: AsyncSession, message: OutboxMessage | None, state: str, status_code: int = 200
) -> HTMLResponse:
    """The page for one state: ``confirm`` (the button), ``done``, ``already`` or an error."""
    nb, en = {
        "confirm": ("Bekreft varsel", "Confirm the message"),
        "done": ("Varsel bekreftet", "Message confirmed"),
        "already": ("Varsel bekreftet", "Message confirmed"),
        "unknown": ("Ukjent bekreftelseskode", "Unknown confirmation code"),
        "not_sent": ("Kan ikke bekreftes", "Cannot be confirmed"),
    }[state]
    incident = await session.get(Incident, message.incident_id) if message else None
    html = _page().render(
        nb=nb,
        en=en,
        state=state,
        message=message,
        incident=incident.title if incident else "",
        sent=oslo(message.sent_at) if message else "",
        acknowledged=oslo(message.acknowledged_at) if message else "",
        group_nb=GROUPS.get(message.group, (message.group,) * 2)[0] if message else "",
        group_en=GROUPS.get(message.group, (message.group,) * 2)[1] if message else "",
        error_nb=(
            "Lenken er ugyldig."
            if message is None
            else f"Meldingen er ikke sendt ({STATUS_NB.get(message.status, message.status)})."
        ),
        error_en=(
            "The link is not valid."
            if message is None
            else f"The message has not been sent (status {message.status})."
        ),
    )
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


@router.get("/ack/{code}", response_class=HTMLResponse)
async def show_acknowledgement(code: str, session: SessionDep) -> HTMLResponse:
    """The link in a message: what it is and a button. Changes nothing (scanners open it)."""
    message = await _message(session, code)
    if message is None:
        return await _render(session, None, "unknown", 404)
    if message.status == MessageStatus.ACKNOWLEDGED:
        return await _render(session, message, "already")
    if message.status != MessageStatus.SENT:
        return await _render(session, message, "not_sent", 409)
    return await _render(session, message, "confirm")


@router.post("/ack/{code}", response_class=HTMLResponse)
async def acknowledge(code: str, session: SessionDep) -> HTMLResponse:
    """The button: confirms the message (idempotent). No CSRF token: the code is the
    credential, and the body (an empty form) is not read."""
    before = await _message(session, code)
    if before is not None and before.status == MessageStatus.ACKNOWLEDGED:
        return await _render(session, before, "already")
    try:
        message = await service.acknowledge(session, code=code, via="link")
    except service.NotifyError as exc:
        await session.rollback()
        state = "unknown" if exc.status == 404 else "not_sent"
        return await _render(session, await _message(session, code), state, exc.status)
    await session.commit()
    return await _render(session, message, "done")


def twilio_signature(token: str, url: str, params: Sequence[tuple[str, str]]) -> str:
    """Twilio's ``X-Twilio-Signature``: base64(HMAC-SHA1(auth token, URL + each POST
    parameter's name and value, sorted by name))."""
    data = url + "".join(name + value for name, value in sorted(params))
    digest = hmac.new(token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _signed(
    request: Request, token: str, params: Sequence[tuple[str, str]] | None, body: bytes
) -> bool:
    """Signed by the gateway; a JSON body (``params`` None) is covered by ``?bodySHA256=``."""
    signature = request.headers.get("x-twilio-signature", "").encode()
    if not signature:
        return False
    if params is None:
        claimed = request.query_params.get("bodySHA256", "").encode()
        if not hmac.compare_digest(claimed, hashlib.sha256(body).hexdigest().encode()):
            return False
        params = []
    # The URL the gateway was given: as this server saw it, or behind a proxy the public one.
    public = notify_config(request).public_base_url.rstrip("/") + request.url.path
    if request.url.query:
        public += "?" + request.url.query
    return any(
        hmac.compare_digest(twilio_signature(token, url, params).encode(), signature)
        for url in dict.fromkeys((str(request.url), public))
    )


def _parse(media: str, body: bytes) -> tuple[list[tuple[str, str]] | None, dict[str, Any]]:
    """(form parameters or None for JSON, {from, text}); ValueError when unreadable."""
    if media == FORM:
        params = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        fields = dict(reversed(params))  # the first of a repeated name
        return params, {"from": fields.get("From"), "text": fields.get("Body")}
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError("a JSON object is expected")
    return None, {"from": data.get("from"), "text": data.get("text")}


async def acknowledge_reply(session: AsyncSession, *, sender: str, text: str) -> int:
    """Confirm every message whose code the reply carries; the number confirmed."""
    codes = list(dict.fromkeys(CODE.findall(text)))
    if not codes:
        return 0
    found = await session.exec(
        select(OutboxMessage.ack_code).where(col(OutboxMessage.ack_code).in_(codes))
    )
    confirmed = 0
    for code in found.all():
        assert code is not None
        try:
            await service.acknowledge(session, code=code, by=f"sms:{sender}", via="sms")
        except service.NotifyError as exc:
            log.warning("inbound SMS from %s: message not confirmed: %s", sender, exc.message)
            continue
        confirmed += 1
    return confirmed


@router.post("/inbound", response_class=Response)
async def inbound_sms(request: Request, session: SessionDep) -> Response:
    """An SMS gateway's webhook for replies. Always the same empty answer for a reply,
    known code or not (a gateway retries errors; nothing tells whether a code exists)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != FORM and media != "application/json" and not media.endswith("+json"):
        return PlainTextResponse("send a form (Twilio) or JSON", status_code=415)
    body = await read_body(request, MAX_INBOUND_BYTES)
    if body is None:
        return PlainTextResponse("too large", status_code=413)
    try:
        params, fields = _parse(media, body)
    except ValueError:  # also UnicodeDecodeError
        return PlainTextResponse("unreadable body", status_code=400)
    token: str | None = request.app.state.settings.sms_inbound_auth_token
    if token and not _signed(request, token, params, body):
        log.warning("inbound SMS refused: missing or wrong X-Twilio-Signature")
        return PlainTextResponse("forbidden", status_code=403)
    sender = str(fields["from"] or "unknown")[:100]
    confirmed = await acknowledge_reply(session, sender=sender, text=str(fields["text"] or ""))
    if confirmed:
        await session.commit()
    else:
        await session.rollback()
        log.warning("inbound SMS from %s: no confirmation code of a sent message", sender)
    return Response(EMPTY_TWIML, media_type="application/xml")
