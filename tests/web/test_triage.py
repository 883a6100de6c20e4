"""The overview as a triage list (web/board/triage.py): order and what needs acting on."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from crisis.log.models import Incident, LogEntry
from notifiers import logbook
from tests.conftest import ApiHarness
from web.board import triage

NOW = datetime(2026, 11, 22, 2, 40, tzinfo=UTC)


def _receipt(seq: int, update: str, group: str, recipient: str, status: str) -> LogEntry:
    data = {"update_id": update, "group": group, "recipient": recipient, "status": status}
    return LogEntry(
        incident_id="i", seq=seq, kind="message", actor="system:notifiers", text="", data=data
    )


def test_failed_deliveries_and_unanswered_alarms_by_latest_status() -> None:
    entries = [
        _receipt(1, "u1", "staff", "a", "queued"),
        _receipt(2, "u1", "staff", "a", "failed"),
        _receipt(3, "u1", "staff", "b", "timed_out"),
        _receipt(4, "u2", "leaders", "c", "timed_out"),
        _receipt(5, "u2", "leaders", "d", "acknowledged"),  # someone answered: not open
        _receipt(6, "u3", "staff", "e", "failed"),
        _receipt(7, "u3", "staff", "e", "sent"),  # a retry got through
    ]
    assert triage.deliveries(entries) == (1, 1)


severities = st.integers(min_value=1, max_value=5)


@given(st.lists(st.tuples(severities, st.booleans(), st.integers(0, 10_000)), max_size=12))
def test_worst_first_and_real_before_exercise_at_one_severity(
    specs: list[tuple[int, bool, int]],
) -> None:
    incidents = [
        Incident(
            id=f"i{n}",
            type="fire",
            title="t",
            unit="agder-froland",
            severity=sev,
            exercise="drill" if drill else None,
            opened_at=NOW - timedelta(seconds=age),
        )
        for n, (sev, drill, age) in enumerate(specs)
    ]
    ordered = sorted(incidents, key=triage.order_key)
    for a, b in itertools.pairwise(ordered):
        assert a.severity >= b.severity
        if a.severity == b.severity:
            assert not (a.exercise and not b.exercise), "an exercise above a real incident"


async def test_overview_flags_overdue_tasks_violations_and_failed_alarms(api: ApiHarness) -> None:
    op = await api.user("op", "operator", unit="agder-froland")
    body: dict[str, Any] = {"type": "fire", "unit": "agder-froland", "severity": 4}
    real = await api.client.post("/api/v1/incidents", json={**body, "title": "Brann"}, headers=op)
    drill = await api.client.post(
        "/api/v1/incidents",
        json={**body, "title": "Brannøvelse", "severity": 5, "exercise": "ov-1"},
        headers=op,
    )
    calm = await api.client.post(
        "/api/v1/incidents", json={**body, "title": "Rolig", "severity": 4}, headers=op
    )
    iid, did, cid = real.json()["id"], drill.json()["id"], calm.json()["id"]
    past = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    r = await api.client.post(
        f"/api/v1/incidents/{iid}/entries",
        json={
            "kind": "task",
            "title": "Evakuer fløy B",
            "responsible_role": "on_duty",
            "deadline": past,
        },
        headers=op,
    )
    assert r.status_code == 201, r.text
    async with api.app.state.sessions() as session:
        data = {"update_id": "u1", "group": "staff", "recipient": "+4740000001", "status": "failed"}
        await logbook.write(session, [logbook.Receipt(iid, "SMS", data)])
        await session.commit()
    violations = await api.client.get(f"/api/v1/incidents/{iid}/violations", headers=op)
    assert violations.status_code == 200 and violations.json()["violations"]
    async with api.login("op") as client:
        page = (await client.get("/")).text
    rows = re.findall(r'<tr class="incident-row[^"]*" data-incident="([^"]+)"', page)
    assert rows == [did, iid, cid] or rows == [did, cid, iid]
    real_row = page.split(f'data-incident="{iid}"')[1].split("</tr>")[0]
    assert "1 tiltak over frist" in real_row and "Evakuer fløy B" in real_row
    assert "1 varsler feilet" in real_row
    n = len(violations.json()["violations"])
    assert f"{n} brudd" in real_row
    assert "needs-action" in page.split(f'data-incident="{iid}"')[0][-80:]
    calm_row = page.split(f'data-incident="{cid}"')[1].split("</tr>")[0]
    assert "tiltak over frist" not in calm_row and "varsler feilet" not in calm_row


async def test_a_refresh_folds_in_only_the_new_receipts(api: ApiHarness) -> None:
    op = await api.user("op", "operator", unit="agder-froland")
    body = {"type": "fire", "title": "Brann", "unit": "agder-froland", "severity": 4}
    iid = (await api.client.post("/api/v1/incidents", json=body, headers=op)).json()["id"]
    library = get_library_for(api)
    cache: dict[str, triage.Deliveries] = {}

    async def receipt(recipient: str, status: str) -> None:
        async with api.app.state.sessions() as session:
            data = {"update_id": "u1", "group": "staff", "recipient": recipient, "status": status}
            await logbook.write(session, [logbook.Receipt(iid, "SMS", data)])
            await session.commit()

    async def counts() -> tuple[int, int]:
        async with api.app.state.sessions() as session:
            incident = await session.get(Incident, iid)
            assert incident is not None
            (r,) = await triage.rows(
                session, incidents=[incident], library=library, now=NOW, cache=cache
            )
            return r.failed, r.unacknowledged

    await receipt("a", "failed")
    await receipt("b", "timed_out")
    assert await counts() == (1, 1)
    seen = cache[iid].seq
    await receipt("a", "sent")  # a retry got through
    assert await counts() == (0, 1) and cache[iid].seq > seen
    await receipt("c", "acknowledged")  # the group is answered
    assert await counts() == (0, 0)
    assert await counts() == (0, 0), "reading nothing new changes nothing"


def get_library_for(api: ApiHarness) -> Any:
    from playbooks.loader import load_library

    settings = api.app.state.settings
    return load_library(settings.playbooks, org=api.app.state.organisation)
