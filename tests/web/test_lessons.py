"""Lessons learned over HTTP: findings and follow-ups on a closed incident (its main page
stays read-only), who may record them, the list across incidents, the board's forms and the
overdue panel on the overview; and, over random sequences, a closed incident takes lessons
and nothing else a person writes."""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from crisis.clock import utcnow
from crisis.log.verify import verify_log
from crisis.settings import Settings
from tests.conftest import ApiHarness, api_for
from tests.forms import form_of, submit

INCIDENT = {"type": "fire", "title": "Brann i verksted", "unit": "agder-froland", "severity": 4}
CLOSE = {"reason": "Slukket", "final_situation": "Verkstedet stengt, ingen skadde"}
PAST = (utcnow() - timedelta(days=3)).date().isoformat()
FUTURE = (utcnow() + timedelta(days=30)).date().isoformat()


async def _open(api: ApiHarness, headers: dict[str, str], **over: Any) -> str:
    r = await api.client.post("/api/v1/incidents", json={**INCIDENT, **over}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _closed(api: ApiHarness, headers: dict[str, str], **over: Any) -> str:
    iid = await _open(api, headers, **over)
    r = await api.client.post(f"/api/v1/incidents/{iid}/close", json=CLOSE, headers=headers)
    assert r.status_code == 201, r.text
    return iid


def _fields(r: Any) -> list[str]:
    return [e["field"] for e in r.json()["errors"]]


async def test_lessons_on_a_closed_incident_through_the_api(api: ApiHarness) -> None:
    op = await api.user("leder", "operator", unit="agder-froland")
    iid = await _closed(api, op)
    base = f"/api/v1/incidents/{iid}/lessons"

    finding = await api.client.post(
        f"{base}/findings",
        json={"finding": "Varslingslisten var utdatert", "category": "improve"},
        headers=op,
    )
    assert finding.status_code == 201, finding.text
    assert finding.json()["kind"] == "finding" and finding.json()["actor"] == "user:leder"
    seq = finding.json()["seq"]
    follow = await api.client.post(
        f"{base}/follow-ups",
        json={"title": "Oppdater listen", "owner": "leder", "due": PAST, "finding": seq},
        headers=op,
    )
    assert follow.status_code == 201, follow.text
    assert follow.json()["data"]["status"] == "open"
    fseq = follow.json()["seq"]

    got = (await api.client.get(base, headers=op)).json()
    assert [f["finding"] for f in got["findings"]] == ["Varslingslisten var utdatert"]
    [item] = got["follow_ups"]
    assert (item["seq"], item["owner"], item["due"], item["finding"]) == (fseq, "leder", PAST, seq)
    assert item["overdue"] is True and got["overdue"] == [fseq]

    moved = await api.client.post(
        f"{base}/follow-ups/{fseq}", json={"status": "in_progress", "due": FUTURE}, headers=op
    )
    assert moved.status_code == 201, moved.text
    assert moved.json()["kind"] == "follow_up_update"
    assert moved.json()["data"] == {"follow_up": fseq, "status": "in_progress", "due": FUTURE}
    [item] = (await api.client.get(base, headers=op)).json()["follow_ups"]
    assert (item["status"], item["due"], item["overdue"]) == ("in_progress", FUTURE, False)

    # the incident stays closed and read-only for everything else
    assert (await api.client.get(f"/api/v1/incidents/{iid}", headers=op)).json()[
        "status"
    ] == "closed"
    refused = await api.client.post(
        f"/api/v1/incidents/{iid}/entries", json={"kind": "observation", "text": "x"}, headers=op
    )
    assert refused.status_code == 409
    # lesson kinds are their own endpoints', not the generic entry's
    generic = await api.client.post(
        f"/api/v1/incidents/{iid}/entries", json={"kind": "finding", "finding": "x"}, headers=op
    )
    assert generic.status_code == 422
    async with api.app.state.sessions() as session:
        assert (await verify_log(session)).ok


async def test_bad_lessons_and_who_may_record_them(api: ApiHarness) -> None:
    op = await api.user("leder", "operator", unit="agder-froland")
    other = await api.user("ringerike", "operator", unit="ringerike")
    comms = await api.user("kom", "communication", unit="agder-froland")
    jd = await api.user("jd", "ministry")
    controller = await api.user("ctl", "exercise-controller")
    iid = await _closed(api, op)
    base = f"/api/v1/incidents/{iid}/lessons"
    body = {"title": "Øv", "owner": "HMS", "due": FUTURE}

    missing = await api.client.post(f"{base}/follow-ups", json={**body, "owner": " "}, headers=op)
    assert missing.status_code == 422 and _fields(missing) == ["owner"]
    bad_due = await api.client.post(f"{base}/follow-ups", json={**body, "due": "snart"}, headers=op)
    assert bad_due.status_code == 422 and _fields(bad_due) == ["due"]
    bad_status = await api.client.post(
        f"{base}/follow-ups", json={**body, "status": "later"}, headers=op
    )
    assert bad_status.status_code == 422 and _fields(bad_status) == ["status"]
    no_finding = await api.client.post(
        f"{base}/follow-ups", json={**body, "finding": 1}, headers=op
    )
    assert no_finding.status_code == 422 and _fields(no_finding) == ["finding"]
    blank = await api.client.post(f"{base}/findings", json={"finding": ""}, headers=op)
    assert blank.status_code == 422 and _fields(blank) == ["finding"]
    # an update names a follow-up of this incident (seq 1 is the opening) and changes something
    not_one = await api.client.post(f"{base}/follow-ups/1", json={"status": "done"}, headers=op)
    assert not_one.status_code == 422 and _fields(not_one) == ["follow_up"]
    fseq = (await api.client.post(f"{base}/follow-ups", json=body, headers=op)).json()["seq"]
    empty = await api.client.post(f"{base}/follow-ups/{fseq}", json={}, headers=op)
    assert empty.status_code == 422 and _fields(empty) == ["status"]

    finding = {"finding": "Funn"}
    for who, code in ((comms, 403), (jd, 403), (other, 403), (controller, 403)):
        r = await api.client.post(f"{base}/findings", json=finding, headers=who)
        assert r.status_code == code, r.text
    assert _fields(await api.client.post(f"{base}/findings", json=finding, headers=comms)) == [
        "role"
    ]
    missing_incident = "/api/v1/incidents/20260101-deadbeef/lessons"
    assert (await api.client.get(missing_incident, headers=op)).status_code == 404
    r = await api.client.post(f"{missing_incident}/findings", json=finding, headers=op)
    assert r.status_code == 404
    assert (await api.client.get(base, headers=other)).status_code == 403
    # the exercise controller records on an exercise, its scope
    drill = await _closed(api, op, exercise="ovelse-1")
    r = await api.client.post(
        f"/api/v1/incidents/{drill}/lessons/findings", json=finding, headers=controller
    )
    assert r.status_code == 201, r.text
    # a lesson on an open incident is recorded too
    live = await _open(api, op)
    r = await api.client.post(
        f"/api/v1/incidents/{live}/lessons/findings", json=finding, headers=op
    )
    assert r.status_code == 201


async def test_follow_ups_across_incidents_by_scope_status_owner_and_overdue(
    api: ApiHarness,
) -> None:
    kdi = await api.user("kdi", "kdi")
    op = await api.user("leder", "operator", unit="agder-froland")
    mine = await _closed(api, kdi)
    theirs = await _closed(api, kdi, unit="ringerike", title="Rømning")
    drill = await _closed(api, kdi, exercise="ovelse-1")

    async def follow(iid: str, **body: Any) -> int:
        r = await api.client.post(
            f"/api/v1/incidents/{iid}/lessons/follow-ups",
            json={"title": "Tiltak", "owner": "leder", "due": FUTURE, **body},
            headers=kdi,
        )
        assert r.status_code == 201, r.text
        return int(r.json()["seq"])

    await follow(mine, title="Forfalt", due=PAST, owner="Nestleder Agder")
    await follow(mine, title="Ferdig", status="done", due=PAST)
    await follow(theirs, title="Ringerike")
    await follow(drill, title="Øvelse")

    async def listed(headers: dict[str, str], query: str = "") -> list[tuple[str, str]]:
        r = await api.client.get(f"/api/v1/lessons?{query}", headers=headers)
        assert r.status_code == 200, r.text
        return [(f["incident_id"], f["title"]) for f in r.json()]

    assert await listed(kdi) == [(mine, "Forfalt"), (mine, "Ferdig"), (theirs, "Ringerike")]
    assert await listed(op) == [(mine, "Forfalt"), (mine, "Ferdig")]
    assert await listed(kdi, "overdue=true") == [(mine, "Forfalt")]
    assert await listed(kdi, "status=done") == [(mine, "Ferdig")]
    assert await listed(kdi, "owner=nestleder") == [(mine, "Forfalt")]
    assert await listed(kdi, "unit=ringerike") == [(theirs, "Ringerike")]
    assert await listed(kdi, "exercise=ovelse-1") == [(drill, "Øvelse")]
    assert len(await listed(kdi, "exercise=all")) == 4
    bad = await api.client.get("/api/v1/lessons?status=later", headers=kdi)
    assert bad.status_code == 422


async def test_the_lessons_pages_forms_and_the_overdue_panel(api: ApiHarness) -> None:
    op_h = await api.user("leder", "operator", unit="agder-froland")
    await api.user("kom", "communication", unit="agder-froland")
    iid = await _closed(api, op_h)
    base = f"/api/v1/incidents/{iid}/lessons"
    async with api.login("leder") as client:
        page = await client.get(f"/incidents/{iid}/lessons")
        assert page.status_code == 200, page.text
        assert 'href="/lessons"' in page.text, "linked in the top navigation"

        r = await submit(
            client, page.text, "form-finding", finding="Vaktlisten manglet", category="improve"
        )
        assert r.status_code == 201, r.text
        [finding] = (await api.client.get(base, headers=op_h)).json()["findings"]
        assert (finding["finding"], finding["category"]) == ("Vaktlisten manglet", "improve")

        page = await client.get(f"/incidents/{iid}/lessons")
        assert "Vaktlisten manglet" in page.text
        form = form_of(page.text, "form-follow-up")
        assert form.names() == {"title", "owner", "due", "status", "finding"}
        r = await submit(
            client,
            page.text,
            "form-follow-up",
            title="Oppdater vaktlisten",
            owner="Nestleder",
            due=PAST,
            finding=finding["seq"],
        )
        assert r.status_code == 201, r.text
        [follow] = (await api.client.get(base, headers=op_h)).json()["follow_ups"]
        assert (follow["title"], follow["owner"], follow["due"], follow["status"]) == (
            "Oppdater vaktlisten",
            "Nestleder",
            PAST,
            "open",
        )
        assert follow["finding"] == finding["seq"] and follow["overdue"] is True

        # overdue: on the overview (a count and a link) and the list across incidents
        overview = await client.get("/")
        assert 'id="overdue-lessons"' in overview.text
        assert re.search(r'id="overdue-count">1<', overview.text)
        assert f'href="/incidents/{iid}/lessons"' in overview.text
        listing = await client.get("/lessons")
        assert "Oppdater vaktlisten" in listing.text and "overdue" in listing.text
        filtered = await submit(client, listing.text, "lessons-form", status="done")
        assert filtered.status_code == 200 and 'id="lessons-empty"' in filtered.text
        overdue_only = await submit(client, listing.text, "lessons-form", overdue=True)
        assert "Oppdater vaktlisten" in overdue_only.text

        page = await client.get(f"/incidents/{iid}/lessons")
        fseq = follow["seq"]
        r = await submit(client, page.text, f"form-follow-up-{fseq}", status="done", note="Ok")
        assert r.status_code == 201, r.text
        [follow] = (await api.client.get(base, headers=op_h)).json()["follow_ups"]
        assert follow["status"] == "done" and follow["overdue"] is False
        overview = await client.get("/")
        assert 'id="overdue-lessons"' not in overview.text

        # the closed incident's main page stays read-only: the reopen form only
        main = await client.get(f"/incidents/{iid}")
        # (writing forms: the log's GET filter writes nothing)
        assert re.findall(r'<form data-api="[^"]*"[^>]* id="([^"]+)"', main.text) == ["form-reopen"]
        assert f'href="/incidents/{iid}/lessons" id="lessons-link"' in main.text

    async with api.login("kom") as client:
        page = await client.get(f"/incidents/{iid}/lessons")
        assert page.status_code == 200 and "Vaktlisten manglet" in page.text
        assert "<form data-api" not in page.text, "no forms for a role that may not record"
        assert (await client.get("/incidents/nope/lessons")).status_code == 404


OPS = st.lists(st.sampled_from(["close", "reopen", "entry", "finding", "follow_up"]), max_size=10)
_people = itertools.count()


@pytest.mark.slow
@hsettings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_a_closed_incident_takes_lessons_and_no_other_entry(
    ops: list[str], settings: Settings
) -> None:
    asyncio.run(_run(ops, settings))


async def _run(ops: list[str], settings_: Settings) -> None:
    async with api_for(settings_) as api:
        op = await api.user(f"leder{next(_people)}", "operator", unit="agder-froland")
        iid = await _open(api, op)
        url = f"/api/v1/incidents/{iid}"
        is_open = True
        for step in ops:
            if step == "close":
                r = await api.client.post(f"{url}/close", json=CLOSE, headers=op)
                expected, is_open = (201, False) if is_open else (409, is_open)
            elif step == "reopen":
                r = await api.client.post(f"{url}/reopen", json={"reason": "igjen"}, headers=op)
                expected, is_open = (409, is_open) if is_open else (201, True)
            elif step == "entry":
                r = await api.client.post(
                    f"{url}/entries", json={"kind": "observation", "text": "x"}, headers=op
                )
                expected = 201 if is_open else 409
            elif step == "finding":
                r = await api.client.post(
                    f"{url}/lessons/findings", json={"finding": "funn"}, headers=op
                )
                expected = 201
            else:
                r = await api.client.post(
                    f"{url}/lessons/follow-ups",
                    json={"title": "t", "owner": "o", "due": FUTURE},
                    headers=op,
                )
                expected = 201
            assert r.status_code == expected, (step, r.text)
        timeline = (await api.client.get(f"{url}/timeline", headers=op)).json()
        state = "open"
        for entry in timeline:
            if entry["kind"] == "status_change":
                state = entry["data"]["status"]
            elif entry["kind"] not in {"finding", "follow_up"}:
                assert state == "open", entry
        lessons = (await api.client.get(f"{url}/lessons", headers=op)).json()
        assert len(lessons["findings"]) == ops.count("finding")
        assert len(lessons["follow_ups"]) == ops.count("follow_up")
        async with api.app.state.sessions() as session:
            assert (await verify_log(session)).ok
