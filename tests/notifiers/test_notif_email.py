"""Alarm e-mails through apprise's own ``mailto://`` plugin to a real local SMTP server:
the HTML part is escaped text with its lines, the plain-text part keeps the lines."""

from __future__ import annotations

import asyncio
import email
import email.policy
from collections.abc import AsyncIterator
from datetime import timedelta
from email.message import EmailMessage
from html.parser import HTMLParser

import pytest
from apprise import NotifyFormat
from apprise.conversion import convert_between
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.clock import utcnow
from crisis.store.db import make_sessionmaker
from notifiers import rendering, service
from notifiers.config import NotifyConfig, parse_notify_config
from notifiers.dispatcher import Dispatcher
from notifiers.models import MessageStatus
from tests.notif_sink import Sink
from tests.notifiers.test_notif_dispatcher import all_final, drain, messages, open_incident

ZONE = "Blokk <b>B</b> & C"
FACTS = {
    "title": f"Brann i {ZONE}",
    "known": f"Røykutvikling i {ZONE} kl. 02.40.\nÆrlig talt: <script>alert(1)</script> & mer.",
    "actions": "Avdelingen er evakuert;   vakter på Østre port og Åsen.",
}


class Smtp:
    """A minimal SMTP server (no TLS, no AUTH) that keeps every message it is given."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> Smtp:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, to: str) -> str:
        return f"mailto://127.0.0.1:{self.port}?from=crisis@example.no&to={to}"

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 localhost ESMTP test\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-localhost\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                data: list[bytes] = []
                while (chunk := await reader.readline()) not in (b".\r\n", b""):
                    chunk = chunk[1:] if chunk.startswith(b"..") else chunk
                    data.append(chunk.replace(b"\r\n", b"\n"))  # as a mail store keeps it
                self.received.append(
                    email.message_from_bytes(b"".join(data), policy=email.policy.default)  # type: ignore[arg-type]
                )
                writer.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()


@pytest.fixture
async def smtp() -> AsyncIterator[Smtp]:
    s = await Smtp().start()
    yield s
    await s.stop()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = await Sink().start()
    yield s
    await s.stop()


def make_config(smtp: Smtp, sink: Sink) -> NotifyConfig:
    return parse_notify_config(
        f"""version: 1
delivery: {{attempts_per_contact: 1, backoff_seconds: 0.01}}
people:
  - id: vakt
    name: Vakthavende (test)
    contacts:
      - {{channel: email, url: '{smtp.url("vakt@example.no")}'}}
  - id: hook
    name: Webhook (test)
    contacts:
      - {{channel: webhook, url: '{sink.url("/hook")}'}}
groups:
  - {{id: g-staff, kind: staff, unit: agder-froland, members: [vakt, hook]}}
""",
        "test-notify.yaml",
    )


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text += data


def parts(message: EmailMessage) -> tuple[str, str]:
    plain = message.get_body(preferencelist=("plain",))
    html_ = message.get_body(preferencelist=("html",))
    assert plain is not None and html_ is not None, message
    return plain.get_content(), html_.get_content()  # type: ignore[attr-defined]


async def test_an_alarm_email_has_escaped_html_and_a_plain_text_part_with_its_lines(
    engine: AsyncEngine, smtp: Smtp, sink: Sink
) -> None:
    config = make_config(smtp, sink)
    incident = await open_incident(engine)
    async with make_sessionmaker(engine)() as session:
        update = await service.request_update(
            session,
            config=config,
            incident_id=incident,
            facts=FACTS,
            groups=["staff"],
            template="alarm",
            next_update_at=utcnow() + timedelta(minutes=30),
            author="user:kari",
        )
        await session.commit()
    dispatcher = Dispatcher(make_sessionmaker(engine), config)
    try:
        await drain(dispatcher, all_final(engine, update.id))
    finally:
        await dispatcher.aclose()
    rows = {m.recipient: m for m in await messages(engine, update.id)}
    assert {m.status for m in rows.values()} == {MessageStatus.SENT}
    body = rows["vakt"].body
    assert len(smtp.received) == 1
    mail = smtp.received[0]
    assert mail["Subject"] == rows["vakt"].title
    assert mail.get_content_type() == "multipart/alternative"
    plain, html_ = parts(mail)

    # the plain-text part: the message's lines, each whole
    lines = plain.rstrip("\n").split("\n")
    assert lines == body.split("\n")
    assert lines[0] == f"ALARM: Brann i {ZONE}"
    assert lines[1] == f"Røykutvikling i {ZONE} kl. 02.40."
    assert lines[2] == (
        "Ærlig talt: <script>alert(1)</script> & mer. "
        "Tiltak: Avdelingen er evakuert;   vakter på Østre port og Åsen."
    )

    # the HTML part: the zone name shows as text; no tag of the message is live markup
    assert "Blokk &lt;b&gt;B&lt;/b&gt; &amp; C" in html_
    assert "<b>" not in html_ and "<script>" not in html_
    tags = Tags()
    tags.feed(html_)
    assert tags.tags == ["pre"]  # the one wrapper that keeps the line breaks
    assert tags.text.rstrip("\n").split("\n") == lines

    # a webhook recipient of the same update still gets the plain text, not HTML
    (hook,) = sink.to("/hook")
    assert hook.body["message"] == body


LINE = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE | st.sampled_from([ZONE, "<i>x</i>", "&amp;", "  æøå ÆØÅ  "]), max_size=8))
def test_any_text_gives_html_without_its_tags_and_a_text_part_with_its_lines(
    lines: list[str],
) -> None:
    body = "\n".join(lines)
    html_ = rendering.email_html(body)
    parsed = Tags()
    parsed.feed(html_)
    parsed.close()
    assert parsed.tags == ["pre"]
    assert parsed.text == rendering.email_text(body)
    # what apprise's e-mail plugin puts in the plain-text part, from this HTML
    plain = convert_between(NotifyFormat.HTML, NotifyFormat.TEXT, html_)
    assert plain == rendering.email_text(body)
    kept = "\n".join(line.rstrip() for line in body.splitlines())
    assert plain in kept  # every line survives whole; only blank ends are trimmed
    assert [x.strip() for x in plain.split("\n") if x.strip()] == [
        x.strip() for x in body.splitlines() if x.strip()
    ]
