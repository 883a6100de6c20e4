"""Acknowledgement that a scanner cannot make: the link's page (GET shows, POST confirms) and
SMS replies through the inbound webhook (Twilio's form or JSON), over the public HTTP API."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlmodel import select

from crisis.clock import utcnow
from notifiers.dispatcher import Dispatcher
from notifiers.models import OutboxMessage
from tests.conftest import ApiHarness
from tests.notif_sink import Sink
from tests.notifiers.test_notif_dispatcher import FACTS, make_config

ACK = "/api/v1/notifications/ack"
INBOUND = "/api/v1/notifications/inbound"
TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TOKEN = "twilio-auth-token-for-tests"


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


@dataclass
class Alarm:
    incident: str
    update: str
    headers: dict[str, str]
    code: str  # from the link in the message leader-a received


async def _alarm(api: ApiHarness, sink: Sink, *, send: bool = True) -> Alarm:
    """An alarm to the leaders of Agder fengsel, Froland (leader-a must confirm)."""
    config = make_config(sink)
    api.app.state.notify_config = config
    kari = await api.user("kari", "operator", unit="agder-froland")
    r = await api.client.post(
        "/api/v1/incidents",
        json={
            "type": "fire",
            "title": "Brann i avdeling A",
            "unit": "agder-froland",
            "severity": 4,
        },
        headers=kari,
    )
    assert r.status_code == 201, r.text
    incident = r.json()["id"]
    r = await api.client.post(
        "/api/v1/notifications/updates",
        json={
            "incident_id": incident,
            "groups": ["leaders"],
            "kind": "alarm",
            "template": "alarm",
            "facts": FACTS,
            "next_update_at": (utcnow() + timedelta(minutes=30)).isoformat(),
        },
        headers=kari,
    )
    assert r.status_code == 201, r.text
    update = r.json()["id"]
    if not send:
        async with api.app.state.sessions() as session:
            message = (
                await session.exec(select(OutboxMessage).where(OutboxMessage.update_id == update))
            ).one()
        assert message.ack_code
        return Alarm(incident, update, kari, message.ack_code)
    dispatcher = Dispatcher(api.app.state.sessions, config)
    try:
        while not sink.to("/leader/a"):
            assert await dispatcher.run_once() or sink.hits
    finally:
        await dispatcher.aclose()
    text = sink.to("/leader/a")[0].body["message"]
    found = re.search(r"svar (\S{16}) eller åpne \S+/api/v1/notifications/ack/(\S{16})", text)
    assert found and found[1] == found[2], text
    return Alarm(incident, update, kari, found[1])


async def _status(api: ApiHarness, alarm: Alarm) -> str:
    r = await api.client.get(f"/api/v1/notifications/updates/{alarm.update}", headers=alarm.headers)
    assert r.status_code == 200, r.text
    (message,) = r.json()["messages"]
    return str(message["status"])


async def _acknowledged(api: ApiHarness, alarm: Alarm) -> list[dict[str, Any]]:
    r = await api.client.get(f"/api/v1/incidents/{alarm.incident}/timeline", headers=alarm.headers)
    assert r.status_code == 200, r.text
    return [e["data"] for e in r.json() if e["data"].get("status") == "acknowledged"]


def _sign(url: str, params: dict[str, str]) -> str:
    """Twilio's documented algorithm: the URL, then each POST parameter's name and value
    sorted by name, HMAC-SHA1 with the auth token, base64."""
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _twilio(body: str, sender: str = "+4791234567") -> dict[str, str]:
    return {
        "ToCountry": "NO",
        "SmsMessageSid": "SM0f4e2b9c1d7a4e5f8a3b6c9d0e1f2a3b",
        "NumMedia": "0",
        "From": sender,
        "To": "+4759440000",
        "Body": body,
        "MessageSid": "SM0f4e2b9c1d7a4e5f8a3b6c9d0e1f2a3b",
        "AccountSid": "AC00000000000000000000000000000000",
        "ApiVersion": "2010-04-01",
    }


async def test_opening_the_link_never_acknowledges_and_the_button_does(
    api: ApiHarness, sink: Sink
) -> None:
    alarm = await _alarm(api, sink)
    link = f"{ACK}/{alarm.code}"
    for _ in range(3):  # a scanner prefetching, a preview, the person
        r = await api.client.get(link, headers={"User-Agent": "Mozilla/5.0 (link scanner)"})
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/html")
        assert r.headers["cache-control"] == "no-store"
        assert "Brann i avdeling A" in r.text and "leader-a" in r.text and "leaders" in r.text
        assert '<form method="post">' in r.text and "Bekreft / Confirm" in r.text
    assert await _status(api, alarm) == "sent"
    assert await _acknowledged(api, alarm) == []

    r = await api.client.post(link, headers=FORM, content=b"")  # the button: an empty form
    assert r.status_code == 200, r.text
    assert "Bekreftet" in r.text and "<form" not in r.text
    assert await _status(api, alarm) == "acknowledged"
    (entry,) = await _acknowledged(api, alarm)
    assert entry["acknowledged_by"] == "recipient:leader-a" and entry["via"] == "link"
    assert entry["recipient"] == "leader-a" and entry["update_id"] == alarm.update

    again = await api.client.post(link, headers=FORM, content=b"")  # twice: nothing new
    assert again.status_code == 200 and "Allerede bekreftet" in again.text
    assert len(await _acknowledged(api, alarm)) == 1
    page = await api.client.get(link)
    assert page.status_code == 200
    assert "Allerede bekreftet" in page.text and "already confirmed" in page.text
    assert "<form" not in page.text and "<button" not in page.text


async def test_a_double_click_logs_one_acknowledgement(api: ApiHarness, sink: Sink) -> None:
    alarm = await _alarm(api, sink)
    link = f"{ACK}/{alarm.code}"
    answers = await asyncio.gather(*(api.client.post(link, headers=FORM) for _ in range(2)))
    assert [r.status_code for r in answers] == [200, 200]
    assert await _status(api, alarm) == "acknowledged"
    assert len(await _acknowledged(api, alarm)) == 1


async def test_an_unknown_code_is_404_and_an_unsent_message_409(
    api: ApiHarness, sink: Sink
) -> None:
    for method in ("GET", "POST"):
        r = await api.client.request(method, f"{ACK}/AAAAAAAAAAAAAAAA")
        assert r.status_code == 404 and "Ukjent bekreftelseskode" in r.text
    alarm = await _alarm(api, sink, send=False)
    for method in ("GET", "POST"):
        r = await api.client.request(method, f"{ACK}/{alarm.code}")
        assert r.status_code == 409 and "ikke sendt" in r.text and "<form" not in r.text
    assert await _status(api, alarm) == "pending"
    assert await _acknowledged(api, alarm) == []


async def test_a_twilio_sms_reply_with_the_code_acknowledges(api: ApiHarness, sink: Sink) -> None:
    alarm = await _alarm(api, sink)
    r = await api.client.post(INBOUND, data=_twilio(f"SVAR {alarm.code}"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/xml" and r.text == TWIML
    assert await _status(api, alarm) == "acknowledged"
    (entry,) = await _acknowledged(api, alarm)
    assert entry["acknowledged_by"] == "sms:+4791234567" and entry["via"] == "sms"
    r = await api.client.post(INBOUND, data=_twilio(f"svar {alarm.code}"))  # sent again
    assert r.status_code == 200 and r.text == TWIML
    assert len(await _acknowledged(api, alarm)) == 1


async def test_a_json_sms_reply_acknowledges(api: ApiHarness, sink: Sink) -> None:
    alarm = await _alarm(api, sink)
    body = {"from": "+4740000001", "to": "+4759440000", "text": f"ok {alarm.code}\n"}
    r = await api.client.post(INBOUND, json=body)
    assert r.status_code == 200 and r.text == TWIML
    assert r.headers["content-type"] == "application/xml"
    assert await _status(api, alarm) == "acknowledged"
    (entry,) = await _acknowledged(api, alarm)
    assert entry["acknowledged_by"] == "sms:+4740000001" and entry["via"] == "sms"


@pytest.mark.parametrize(
    "text", ["SVAR AAAAAAAAAAAAAAAA", "Hei, jeg kommer", "", "SVAR {code}x", "SVAR x{code}"]
)
async def test_a_reply_without_a_known_code_answers_the_same_and_records_nothing(
    api: ApiHarness, sink: Sink, text: str
) -> None:
    alarm = await _alarm(api, sink)
    body = text.format(code=alarm.code)
    for r in (
        await api.client.post(INBOUND, data=_twilio(body)),
        await api.client.post(INBOUND, json={"from": "+4740000001", "text": body}),
        await api.client.post(INBOUND, data={"From": "+4740000001"}),  # no Body at all
    ):
        assert r.status_code == 200 and r.text == TWIML
        assert r.headers["content-type"] == "application/xml"
    assert await _status(api, alarm) == "sent"
    assert await _acknowledged(api, alarm) == []


async def test_with_an_auth_token_only_a_correctly_signed_reply_counts(
    api: ApiHarness, sink: Sink
) -> None:
    alarm = await _alarm(api, sink)
    api.app.state.settings.sms_inbound_auth_token = TOKEN
    url = f"http://testserver{INBOUND}"
    params = _twilio(f"SVAR {alarm.code}")
    forged = {**params, "From": "+4799999999"}
    for headers in (
        {},
        {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        {"X-Twilio-Signature": _sign(url, params)},  # signed, but another body is sent
        {"X-Twilio-Signature": _sign(url + "?x=1", forged)},  # signed for another URL
    ):
        r = await api.client.post(INBOUND, content=urlencode(forged), headers=FORM | headers)
        assert r.status_code == 403
    r = await api.client.post(INBOUND, json={"from": "+4799999999", "text": alarm.code}, headers={})
    assert r.status_code == 403
    assert await _status(api, alarm) == "sent"
    assert await _acknowledged(api, alarm) == []

    signature = _sign(url, params)
    r = await api.client.post(
        INBOUND, content=urlencode(params), headers=FORM | {"X-Twilio-Signature": signature}
    )
    assert r.status_code == 200 and r.text == TWIML
    assert await _status(api, alarm) == "acknowledged"
    (entry,) = await _acknowledged(api, alarm)
    assert entry["acknowledged_by"] == "sms:+4791234567"


async def test_with_an_auth_token_a_json_reply_is_signed_with_its_body_hash(
    api: ApiHarness, sink: Sink
) -> None:
    """Twilio's scheme for JSON bodies: ``?bodySHA256=`` in the signed URL, no parameters."""
    alarm = await _alarm(api, sink)
    api.app.state.settings.sms_inbound_auth_token = TOKEN
    body = json.dumps({"from": "+4740000002", "text": f"SVAR {alarm.code}"}).encode()
    path = f"{INBOUND}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    json_type = {"Content-Type": "application/json"}
    tampered = body.replace(b"+4740000002", b"+4740000003")
    signature = {"X-Twilio-Signature": _sign(f"http://testserver{path}", {})}
    r = await api.client.post(path, content=tampered, headers=json_type | signature)
    assert r.status_code == 403
    assert await _acknowledged(api, alarm) == []
    r = await api.client.post(path, content=body, headers=json_type | signature)
    assert r.status_code == 200 and r.text == TWIML
    (entry,) = await _acknowledged(api, alarm)
    assert entry["acknowledged_by"] == "sms:+4740000002"
