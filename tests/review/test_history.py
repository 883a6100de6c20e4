"""Incident history: ``GET /api/v1/incidents`` with status, from/to (Oslo days), unit, type,
q, exercises and paging, scoped in SQL; the board's /history form gives the same rows."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from crisis.domain.vocabulary import EntryKind
from crisis.log import append
from crisis.log.models import IncidentCreate
from crisis.review.history import BadBound, parse_bound
from tests.conftest import ApiHarness
from tests.forms import form_of, submit


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


async def make(
    api: ApiHarness,
    *,
    title: str,
    opened: datetime,
    closed: datetime | None = None,
    unit: str = "agder-froland",
    type: str = "fire",
    severity: int = 3,
    exercise: str | None = None,
    reason: str = "Avklart",
) -> str:
    """An incident opened (and closed) at the given instants, through the append service."""
    async with api.app.state.sessions() as session:
        incident, _ = await append.open_incident(
            session,
            incident=IncidentCreate(
                type=type, title=title, unit=unit, severity=severity, exercise=exercise
            ),
            actor="user:test",
            at=opened,
        )
        if closed is not None:
            await append.append(
                session,
                incident_id=incident.id,
                kind=EntryKind.STATUS_CHANGE.value,
                actor="user:test",
                data={"status": "closed", "reason": reason, "final_situation": "Normal drift"},
                at=closed,
            )
        await session.commit()
        return incident.id


async def ids(api: ApiHarness, headers: dict[str, str], query: str) -> list[str]:
    r = await api.client.get(f"/api/v1/incidents?{query}", headers=headers)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()]


def test_a_bare_date_is_an_oslo_day() -> None:
    # winter: Oslo is UTC+1; summer: UTC+2
    assert parse_bound("2026-03-12", end=False).at == utc(2026, 3, 11, 23)
    assert parse_bound("2026-03-12", end=True).at == utc(2026, 3, 12, 23)
    assert parse_bound("2026-07-01", end=False).at == utc(2026, 6, 30, 22)
    assert parse_bound("2026-03-12T10:00", end=False).at == utc(2026, 3, 12, 9)
    assert parse_bound("2026-03-12T10:00Z", end=False).at == utc(2026, 3, 12, 10)
    for bad in ("yesterday", "2026-13-01", "12.03.2026", ""):
        with pytest.raises(BadBound):
            parse_bound(bad, end=False)


async def test_history_filters_exercises_and_paging(api: ApiHarness) -> None:
    kdi = await api.user("kdi", "kdi")
    a = await make(
        api, title="Brann i verksted", opened=utc(2026, 3, 10, 10), closed=utc(2026, 3, 10, 12)
    )
    # opened 00:30 on 12 March in Oslo, 23:30 on 11 March in UTC
    b = await make(
        api,
        title="Uteblivelse fra permisjon",
        type="leave",
        unit="ringerike",
        opened=utc(2026, 3, 11, 23, 30),
        closed=utc(2026, 3, 12, 1),
    )
    drill = await make(
        api,
        title="Øvelse brann",
        exercise="ovelse-1",
        opened=utc(2026, 3, 10, 9),
        closed=utc(2026, 3, 10, 11),
    )
    live = await make(api, title="Personalarm", opened=utc(2026, 3, 13, 8), severity=5)

    # the default list is as it was: everything in scope, worst first
    assert await ids(api, kdi, "") == [live, b, a, drill]
    assert await ids(api, kdi, "status=open") == [live]
    # the history: latest closed first, exercises only when asked for
    assert await ids(api, kdi, "status=closed") == [b, a]
    assert await ids(api, kdi, "status=closed&exercise=all") == [b, a, drill]
    assert await ids(api, kdi, "status=closed&exercise=ovelse-1") == [drill]
    assert await ids(api, kdi, "status=closed&exercise=true") == [drill]
    # Oslo calendar days: b belongs to 12 March, not to 11 March as it would in UTC
    assert await ids(api, kdi, "status=closed&from=2026-03-12&to=2026-03-12") == [b]
    assert await ids(api, kdi, "status=closed&from=2026-03-11&to=2026-03-11") == []
    assert await ids(api, kdi, "status=closed&from=2026-03-10&to=2026-03-10") == [a]
    assert await ids(api, kdi, "status=closed&from=2026-03-10T11:30%2B01:00") == [b, a]
    assert await ids(api, kdi, "status=closed&from=2026-03-10T13:30%2B01:00") == [b]
    assert await ids(api, kdi, "status=closed&unit=ringerike") == [b]
    assert await ids(api, kdi, "status=closed&type=fire") == [a]
    assert await ids(api, kdi, "status=closed&q=BRANN") == [a]
    assert await ids(api, kdi, "status=closed&q=permisjon") == [b]
    assert await ids(api, kdi, "status=closed&q=%25") == [], "LIKE wildcards are literal"
    assert await ids(api, kdi, "q=brann&exercise=all") == [a, drill]

    first = await api.client.get("/api/v1/incidents?status=closed&limit=1", headers=kdi)
    assert [i["id"] for i in first.json()] == [b]
    assert first.headers["X-Total-Count"] == "2"
    assert 'rel="next"' in first.headers["Link"] and 'rel="prev"' not in first.headers["Link"]
    next_url = re.search(r"<([^>]+)>; rel=\"next\"", first.headers["Link"])
    assert next_url is not None
    second = await api.client.get(next_url.group(1), headers=kdi)
    assert [i["id"] for i in second.json()] == [a]
    assert second.headers["X-Total-Count"] == "2"
    assert 'rel="prev"' in second.headers["Link"] and 'rel="next"' not in second.headers["Link"]
    alone = await api.client.get("/api/v1/incidents?status=closed", headers=kdi)
    assert "Link" not in alone.headers
    assert set(alone.json()[0]) >= {"id", "type", "title", "unit", "status", "closed_at"}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=yesterday", "from"),
        ("to=2026-02-30", "to"),
        ("from=2026-03-12&to=2026-03-11", "to"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("offset=-1", "offset"),
        ("limit=ten", "limit"),
    ],
)
async def test_bad_bounds_and_limits_are_422(api: ApiHarness, query: str, field: str) -> None:
    kdi = await api.user("kdi", "kdi")
    r = await api.client.get(f"/api/v1/incidents?status=closed&{query}", headers=kdi)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_a_scoped_user_pages_through_its_own_incidents_only(api: ApiHarness) -> None:
    """Scope is applied in SQL before paging: the pages and the total are the user's."""
    op = await api.user("op", "operator", unit="agder-froland")
    mine = []
    for n in range(5):
        # the other unit's incidents close later, so they would head every page if the
        # scope were applied after it
        await make(
            api,
            title=f"Annen enhet {n}",
            unit="ringerike",
            opened=utc(2026, 4, 1, n),
            closed=utc(2026, 4, 2, n),
        )
        mine.append(
            await make(api, title=f"Egen {n}", opened=utc(2026, 3, 1, n), closed=utc(2026, 3, 2, n))
        )
    seen: list[str] = []
    for offset in (0, 2, 4):
        r = await api.client.get(
            f"/api/v1/incidents?status=closed&limit=2&offset={offset}", headers=op
        )
        assert r.headers["X-Total-Count"] == "5"
        seen += [i["id"] for i in r.json()]
    assert seen == list(reversed(mine))
    assert await ids(api, op, "status=closed&unit=ringerike") == []


async def test_the_history_page_form_gives_the_api_rows(api: ApiHarness) -> None:
    op_h = await api.user("op", "operator", unit="agder-froland")
    fire = await make(
        api,
        title="Brann i verksted",
        opened=utc(2026, 3, 10, 10),
        closed=utc(2026, 3, 10, 12, 15),
        reason="Slukket av brannvesenet",
    )
    await make(
        api, title="Uteblivelse", type="leave", opened=utc(2026, 3, 9, 8), closed=utc(2026, 3, 9, 9)
    )
    drill = await make(
        api, title="Øvelse brann", exercise="ovelse-1", opened=utc(2026, 3, 10, 9), closed=None
    )
    async with api.login("op") as client:
        page = await client.get("/history")
        assert page.status_code == 200, page.text
        assert 'href="/history"' in page.text, "linked in the top navigation"
        form = form_of(page.text, "history-form")
        assert form.names() == {"status", "from", "to", "unit", "type", "q", "exercise"}
        assert "ringerike" not in page.text, "only the units in scope are offered"

        result = await submit(
            client,
            page.text,
            "history-form",
            status="closed",
            **{"from": "2026-03-10", "to": "2026-03-10"},
            q="brann",
        )
        assert result.status_code == 200, result.text
        rows = re.findall(r'class="history-row[^"]*" data-incident="([^"]+)"', result.text)
        query = "status=closed&from=2026-03-10&to=2026-03-10&q=brann"
        assert rows == await ids(api, op_h, query) == [fire]
        # Oslo times, the duration, the closing reason, the incident and review links
        assert "10.03.2026 11:00" in result.text and "10.03.2026 13:15" in result.text
        assert "2 t 15 min" in result.text and "Slukket av brannvesenet" in result.text
        assert f'href="/incidents/{fire}"' in result.text
        assert f'href="/incidents/{fire}/review"' in result.text

        # the exercise box and the open status: the drill appears
        again = await submit(client, page.text, "history-form", status="open", exercise=True)
        rows = re.findall(r'data-incident="([^"]+)"', again.text)
        assert rows == await ids(api, op_h, "status=open&exercise=all") == [drill]

        bad = await submit(client, page.text, "history-form", **{"from": "10.03.2026"})
        assert bad.status_code == 422 and 'id="history-error"' in bad.text

        en = await client.get("/history?lang=en")
        assert "Incident history" in en.text


async def test_the_history_page_pages(api: ApiHarness) -> None:
    await api.user("kdi", "kdi")
    made = [
        await make(
            api, title=f"Hendelse {n}", opened=utc(2026, 1, 1, 0, n), closed=utc(2026, 1, 2, 0, n)
        )
        for n in range(53)
    ]
    async with api.login("kdi") as client:
        first = await client.get("/history")
        assert ">53<" in first.text and 'id="history-prev"' not in first.text
        rows = re.findall(r'data-incident="([^"]+)"', first.text)
        assert rows == list(reversed(made))[:50]
        link = re.search(r'href="([^"]+)" rel="next"', first.text)
        assert link is not None
        second = await client.get(link.group(1).replace("&amp;", "&"))
        assert re.findall(r'data-incident="([^"]+)"', second.text) == list(reversed(made))[50:]
        assert 'id="history-prev"' in second.text


async def test_the_history_needs_a_login_and_is_not_the_ministry_s(api: ApiHarness) -> None:
    assert (await api.client.get("/history")).status_code == 303
    await api.user("jd", "ministry")
    async with api.login("jd") as client:
        assert (await client.get("/history")).status_code == 403
