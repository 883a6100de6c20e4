"""Situation reports: a draft from the log → versions → approval; what the ministry sees."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crisis.log import sitreps
from crisis.log.models import Incident
from tests.conftest import ApiHarness

INCIDENT = {
    "type": "personal_alarm",
    "title": "Personalarm utløst, avdeling A",
    "unit": "agder-froland",
    "severity": 4,
}


async def _open(api: ApiHarness, headers: dict[str, str], **over: Any) -> dict[str, Any]:
    r = await api.client.post("/api/v1/incidents", json={**INCIDENT, **over}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _entry(api: ApiHarness, h: dict[str, str], iid: str, **body: Any) -> dict[str, Any]:
    r = await api.client.post(f"/api/v1/incidents/{iid}/entries", json=body, headers=h)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_draft_is_composed_from_the_log(api: ApiHarness) -> None:
    op = await api.user("op", "operator", unit="agder-froland")
    incident = await _open(api, op)
    iid = incident["id"]
    await _entry(api, op, iid, kind="observation", text="Betjent skadet i hånden")
    task = await _entry(api, op, iid, kind="task", title="Tilkall lege", responsible_role="on_duty")
    await _entry(api, op, iid, kind="task_update", task=task["seq"], status="done")
    await _entry(
        api, op, iid, kind="task", title="Informer pårørende", responsible_role="family_liaison"
    )
    await _entry(
        api,
        op,
        iid,
        kind="decision",
        text="Innelåsing av avdeling A",
        measure="innelasing",
        legal_basis="strgjfl. § 37",
        proportionality="nødvendig",
        alternatives="bemanning",
    )
    await _entry(
        api,
        op,
        iid,
        kind="cooperation_contact",
        text="Politiet varslet",
        actor={"kind": "police", "name": "Agder politidistrikt", "status": "acknowledged"},
    )
    r = await api.client.post(f"/api/v1/incidents/{iid}/sitreps", headers=op)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "draft" and body["number"] == 1
    current = body["current"]
    assert "Betjent skadet i hånden" in current["situation"]
    # plain language for a ministry reader: the log's codes are said in words
    assert "Tilkall lege (vakthavende) — utført" in current["actions"]
    assert "Agder politidistrikt (politiet) — bekreftet" in current["actions"]
    assert "Type:" not in current["situation"] and "nivå unit" not in current["situation"]
    assert "håndteres på enhetsnivå" in current["situation"]
    for code in ("on_duty", "police", "acknowledged", "not_started", "family_liaison"):
        assert code not in current["actions"] + current["needs"], code
    assert "Innelåsing av avdeling A" in current["decisions"]
    assert "hjemmel: strgjfl. § 37" in current["decisions"]
    assert "Gjenstår: Informer pårørende" in current["needs"]
    assert "Tilkall lege" not in current["needs"]
    assert current["next_update_at"] is not None
    assert current["author"] == "user:op" and current["version"] == 1


async def test_draft_versions_approval_and_the_ministry(api: ApiHarness) -> None:
    op = await api.user("op", "operator", unit="agder-froland")
    jd = await api.user("jd", "ministry")
    incident = await _open(api, op)
    iid = incident["id"]
    sitrep = (await api.client.post(f"/api/v1/incidents/{iid}/sitreps", headers=op)).json()
    sid = sitrep["id"]

    # the ministry: a draft does not exist
    assert (await api.client.get(f"/api/v1/sitreps/{sid}", headers=jd)).status_code == 404
    assert (await api.client.get("/api/v1/sitreps", headers=jd)).json() == []
    listed = await api.client.get(f"/api/v1/incidents/{iid}/sitreps", headers=jd)
    assert listed.status_code == 200 and listed.json() == []

    edit = {
        "situation": "Situasjonen er under kontroll.",
        "actions": "Lege tilkalt.",
        "decisions": "Ingen tvangstiltak.",
        "needs": "Ingen.",
        "next_update_at": "2099-01-01T10:00:00Z",
        "note": "rettet av vakthavende",
    }
    v2 = await api.client.post(f"/api/v1/sitreps/{sid}/versions", json=edit, headers=op)
    assert v2.status_code == 201, v2.text
    assert [v["version"] for v in v2.json()["versions"]] == [1, 2]

    stale = await api.client.post(f"/api/v1/sitreps/{sid}/approve", json={"version": 1}, headers=op)
    assert stale.status_code == 409 and stale.json()["errors"][0]["field"] == "version"
    ok = await api.client.post(f"/api/v1/sitreps/{sid}/approve", json={"version": 2}, headers=op)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "approved" and ok.json()["approved_by"] == "user:op"

    # approved: closed for edits, visible to the ministry with the approved version only
    late = await api.client.post(f"/api/v1/sitreps/{sid}/versions", json=edit, headers=op)
    assert late.status_code == 409
    seen = await api.client.get(f"/api/v1/sitreps/{sid}", headers=jd)
    assert seen.status_code == 200
    assert seen.json()["current"]["situation"] == "Situasjonen er under kontroll."
    assert [v["version"] for v in seen.json()["versions"]] == [2]
    assert [s["id"] for s in (await api.client.get("/api/v1/sitreps", headers=jd)).json()] == [sid]

    # every version and the approval are log entries; the promise is the incident's next update
    timeline = (await api.client.get(f"/api/v1/incidents/{iid}/timeline", headers=op)).json()
    reports = [e for e in timeline if e["kind"] == "situation_report"]
    assert [(e["data"]["version"], e["data"]["action"]) for e in reports] == [
        (1, "version"),
        (2, "version"),
        (2, "approved"),
    ]
    got = (await api.client.get(f"/api/v1/incidents/{iid}", headers=op)).json()
    assert got["next_update_at"].startswith("2099-01-01T10:00:00")


async def test_only_the_accountable_role_approves(api: ApiHarness) -> None:
    op = await api.user("op", "operator", unit="agder-froland")
    komm = await api.user("komm", "communication")
    region = await api.user("sorvest", "region", region="sorvest")
    kdi = await api.user("kdi", "kdi")
    jd = await api.user("jd", "ministry")
    incident = await _open(api, op)
    sid = (await api.client.post(f"/api/v1/incidents/{incident['id']}/sitreps", headers=op)).json()[
        "id"
    ]
    for who, expected in ((komm, 403), (region, 403), (jd, 403)):
        r = await api.client.post(
            f"/api/v1/sitreps/{sid}/approve", json={"version": 1}, headers=who
        )
        assert r.status_code == expected, r.text
    # once the incident is at region level, the region is accountable as well
    r = await api.client.post(
        f"/api/v1/incidents/{incident['id']}/escalate",
        json={"to": "region", "reason": "kapasitet", "criteria": ["flere skadde"]},
        headers=op,
    )
    assert r.status_code == 201, r.text
    r = await api.client.post(f"/api/v1/sitreps/{sid}/approve", json={"version": 1}, headers=region)
    assert r.status_code == 200, r.text
    sid2 = (
        await api.client.post(f"/api/v1/incidents/{incident['id']}/sitreps", headers=kdi)
    ).json()["id"]
    r = await api.client.post(f"/api/v1/sitreps/{sid2}/approve", json={"version": 1}, headers=kdi)
    assert r.status_code == 200, r.text


async def test_exercise_reports_never_reach_the_ministry(api: ApiHarness) -> None:
    op = await api.user("op", "operator", unit="agder-froland")
    jd = await api.user("jd", "ministry")
    incident = await _open(api, op, exercise="ovelse-2026-11")
    sid = (await api.client.post(f"/api/v1/incidents/{incident['id']}/sitreps", headers=op)).json()[
        "id"
    ]
    r = await api.client.post(f"/api/v1/sitreps/{sid}/approve", json={"version": 1}, headers=op)
    assert r.status_code == 200
    assert (await api.client.get(f"/api/v1/sitreps/{sid}", headers=jd)).status_code == 404
    assert (await api.client.get("/api/v1/sitreps", headers=jd)).json() == []


async def test_out_of_scope_unit_staff_cannot_draft_or_read(api: ApiHarness) -> None:
    op = await api.user("op", "operator", unit="agder-froland")
    other = await api.user("op2", "operator", unit="ringerike")
    incident = await _open(api, op)
    sid = (await api.client.post(f"/api/v1/incidents/{incident['id']}/sitreps", headers=op)).json()[
        "id"
    ]
    assert (
        await api.client.post(f"/api/v1/incidents/{incident['id']}/sitreps", headers=other)
    ).status_code == 403
    assert (await api.client.get(f"/api/v1/sitreps/{sid}", headers=other)).status_code == 403
    assert (await api.client.get("/api/v1/sitreps", headers=other)).json() == []


def test_can_approve_rules() -> None:
    from crisis.accounts.models import User

    incident = Incident(
        id="x", type="t", title="t", unit="agder-froland", severity=3, opened_at=datetime.now(UTC)
    )

    def user(role: str, unit: str | None = None, region: str | None = None) -> User:
        return User(name="u", role=role, unit=unit, region=region, password_hash="")

    def can(u: User) -> bool:
        return sitreps.can_approve(u, incident, region_of_owner="sorvest")

    assert can(user("operator", unit="agder-froland"))
    assert not can(user("operator", unit="ringerike"))
    assert not can(user("region", region="sorvest"))  # incident still at unit level
    assert can(user("kdi")) and can(user("admin"))
    assert not can(user("ministry")) and not can(user("communication"))
    assert not can(user("exercise-controller"))
    incident.level = "region"
    assert can(user("region", region="sorvest")) and not can(user("region", region="ost"))


def test_compose_draft_keeps_a_promise_in_the_future() -> None:
    now = datetime(2026, 11, 22, 2, 41, tzinfo=UTC)
    incident = Incident(
        id="x", type="fire", title="Brann", unit="u", severity=5, opened_at=now, exercise="ov-1"
    )
    draft = sitreps.compose_draft(incident, [], now=now)
    assert draft.situation.startswith("ØVELSE")
    assert draft.next_update_at == datetime(2026, 11, 22, 3, 45, tzinfo=UTC)
    promised = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)
    incident.next_update_at = promised
    assert sitreps.compose_draft(incident, [], now=now).next_update_at == promised


async def test_an_approved_report_is_queued_for_the_ministry(api: ApiHarness) -> None:
    """Approved by another person: straight to JD. Self-approved: JD waits for a second person."""
    from sqlmodel import select

    from notifiers.models import NotifyUpdate

    writer = await api.user("vakthavende", "operator", unit="agder-froland")
    leader = await api.user("leder", "operator", unit="agder-froland")
    edit = {
        "situation": "Under kontroll.",
        "actions": "Lege tilkalt.",
        "next_update_at": "2099-01-01T10:00:00Z",
    }
    results = []
    for approver in (leader, writer):
        iid = (await _open(api, writer))["id"]
        sid = (await api.client.post(f"/api/v1/incidents/{iid}/sitreps", headers=writer)).json()[
            "id"
        ]
        await api.client.post(f"/api/v1/sitreps/{sid}/versions", json=edit, headers=writer)
        ok = await api.client.post(
            f"/api/v1/sitreps/{sid}/approve", json={"version": 2}, headers=approver
        )
        assert ok.status_code == 200, ok.text
        async with api.app.state.sessions() as session:
            [update] = (
                await session.exec(select(NotifyUpdate).where(NotifyUpdate.incident_id == iid))
            ).all()
        assert update.groups == ["ministry"] and update.template == "sitrep"
        assert "Under kontroll." in update.facts["known"]
        results.append(update.approved_by)
    assert results == ["user:leder", None]


async def test_hourly_reports_do_not_grow_with_the_report_number(api: ApiHarness) -> None:
    """Issue 15: each draft copied the needs of every earlier report (18, 20, 43, 89 … 500).

    A draft carries forward only the newest report's state: the needs staff wrote by hand
    once, the needs from the log once, and nothing copied from copies.
    """
    op = await api.user("op", "operator", unit="agder-froland")
    iid = (await _open(api, op))["id"]
    await _entry(api, op, iid, kind="observation", text="Røyk i avdeling B", needs="Brannvesen")
    await _entry(api, op, iid, kind="task", title="Evakuer avdeling B", responsible_role="on_duty")
    lengths: list[dict[str, int]] = []
    for n in range(1, 101):
        r = await api.client.post(f"/api/v1/incidents/{iid}/sitreps", headers=op)
        assert r.status_code == 201, f"report {n}: {r.status_code} {r.text[:200]}"
        sitrep = r.json()
        version = sitrep["current"]["version"]
        if n == 1:  # the staff add a need by hand; later drafts carry it forward
            edit = {**sitrep["current"], "note": "behov lagt til"}
            edit["needs"] += "\n- Ekstra bemanning fra Arendal"
            r = await api.client.post(
                f"/api/v1/sitreps/{sitrep['id']}/versions", json=edit, headers=op
            )
            assert r.status_code == 201, r.text
            version = r.json()["current"]["version"]
        r = await api.client.post(
            f"/api/v1/sitreps/{sitrep['id']}/approve", json={"version": version}, headers=op
        )
        assert r.status_code == 200, f"report {n}: {r.status_code} {r.text[:200]}"
        current = r.json()["current"]
        lengths.append({k: len(current[k]) for k in ("situation", "actions", "decisions", "needs")})
        if n > 1:
            needs = current["needs"]
            assert needs.count("Ekstra bemanning fra Arendal") == 1, needs
            assert needs.count("Brannvesen") == 1, needs
            assert needs.count("Gjenstår: Evakuer avdeling B") == 1, needs
            assert "- - " not in needs, needs
    # bounded: from report 3 on only counters grow a digit ("(9 utsendelser)" → "(100 …)")
    for field in ("situation", "decisions", "needs"):
        assert {row[field] for row in lengths[1:]} == {lengths[1][field]}, field
    actions = [row["actions"] for row in lengths[2:]]
    assert max(actions) - min(actions) <= 6, (lengths[:4], lengths[-1])
    assert max(sum(row.values()) for row in lengths) < 2_000


def test_a_draft_over_the_field_limit_is_shortened_with_a_note() -> None:
    """A composed field never exceeds the 20,000-character limit: the tail is cut, visibly."""
    from crisis.log.models import LogEntry

    now = datetime(2026, 11, 22, 2, 41, tzinfo=UTC)
    incident = Incident(id="x", type="fire", title="Brann", unit="u", severity=5, opened_at=now)
    carried = "\n".join(f"- Behov {i}: {'x' * 80}" for i in range(400))  # ~36,000 characters
    entries = [
        LogEntry(
            incident_id="x",
            seq=1,
            kind="situation_report",
            at=now,
            actor="user:op",
            data={"sitrep": 1, "version": 2, "action": "version", "needs": carried},
            prev_hash="",
            hash="",
        ),
        LogEntry(
            incident_id="x",
            seq=2,
            kind="observation",
            at=now,
            actor="user:op",
            text="Røyk",
            data={"needs": "Brannvesen"},
            prev_hash="",
            hash="",
        ),
    ]
    draft = sitreps.compose_draft(incident, entries, now=now)
    assert len(draft.needs) <= sitreps.FIELD_LIMIT
    assert draft.needs.startswith("- Brannvesen\n- Behov 0:")  # the log's needs come first
    assert draft.needs.endswith(sitreps.SHORTENED)
    assert "(forkortet" in draft.needs
