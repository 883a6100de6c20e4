"""Exercise data never enters real statistics: an exercise's incidents — closed, measured,
with lessons — appear in neither the response metrics, nor the history without
``exercise=``, nor the lessons list; asked for by their exercise id they are all there."""

from __future__ import annotations

from datetime import timedelta

from crisis.clock import utcnow
from tests.conftest import ApiHarness
from tests.review.scripted import T0, scripted_incident

EX = "ovelse-brann-natt-20261203-1830"
DUE = (utcnow() + timedelta(days=30)).date().isoformat()


async def test_an_exercise_stays_out_of_real_statistics(api: ApiHarness) -> None:
    async with api.app.state.sessions() as session:
        await scripted_incident(session, incident_id="real1")
        await scripted_incident(session, incident_id="drill1", exercise=EX)
        await scripted_incident(
            session, incident_id="drill2", exercise=EX, t0=T0 + timedelta(hours=1)
        )
        await session.commit()
    kdi = await api.user("kdi", "kdi")
    for iid in ("real1", "drill1", "drill2"):
        r = await api.client.post(
            f"/api/v1/incidents/{iid}/lessons/follow-ups",
            json={"title": f"Tiltak {iid}", "owner": "HMS", "due": DUE},
            headers=kdi,
        )
        assert r.status_code == 201, r.text

    # response metrics: the exercise is not counted, whatever the grouping
    for group_by in ("all", "unit", "type", "month"):
        r = await api.client.get(f"/api/v1/metrics/response?group_by={group_by}", headers=kdi)
        assert r.status_code == 200, r.text
        assert r.json()["incidents"] == 1, group_by
        assert sum(g["incidents"] for g in r.json()["groups"]) == 1
    # the history (closed incidents) without exercise=: real ones only
    history = await api.client.get("/api/v1/incidents?status=closed", headers=kdi)
    assert [i["id"] for i in history.json()] == ["real1"]
    async with api.login("kdi") as browser:
        page = await browser.get("/history")
        assert page.status_code == 200 and "real1" in page.text and "drill1" not in page.text
        asked = await browser.get(f"/history?exercise={EX}")
        assert "drill1" in asked.text and "real1" not in asked.text
    # the lessons list across incidents
    lessons = await api.client.get("/api/v1/lessons", headers=kdi)
    assert [f["incident_id"] for f in lessons.json()] == ["real1"]

    # asked for by the exercise id, they are there (the evaluation reads them so)
    drills = await api.client.get(f"/api/v1/incidents?status=closed&exercise={EX}", headers=kdi)
    assert sorted(i["id"] for i in drills.json()) == ["drill1", "drill2"]
    listed = await api.client.get(f"/api/v1/lessons?exercise={EX}", headers=kdi)
    assert sorted(f["incident_id"] for f in listed.json()) == ["drill1", "drill2"]
