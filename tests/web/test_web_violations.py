"""The board's violations endpoint over a real app and database."""

from __future__ import annotations

from tests.conftest import ApiHarness


async def test_violations_endpoint_lists_what_the_log_shows(api: ApiHarness) -> None:
    admin = await api.user("admin1", "admin")
    opened = await api.client.post(
        "/api/v1/incidents",
        json={"type": "fire", "title": "Brann i kjøkkenet", "unit": "ravneberget", "severity": 4},
        headers=admin,
    )
    assert opened.status_code == 201, opened.text
    incident_id = opened.json()["id"]
    url = f"/api/v1/incidents/{incident_id}/violations"

    clean = await api.client.get(url, headers=admin)
    assert clean.status_code == 200, clean.text
    assert clean.json() == {"incident_id": incident_id, "violations": []}

    added = await api.client.post(
        f"/api/v1/incidents/{incident_id}/entries",
        json={"kind": "observation", "text": "En innsatt omkom", "flags": ["death"]},
        headers=admin,
    )
    assert added.status_code == 201, added.text
    body = (await api.client.get(url, headers=admin)).json()
    [violation] = body["violations"]
    assert violation["code"] == "level_below_required"
    assert violation["principle"] == "nærhetsprinsippet"
    assert "flagg: death" in violation["message"]
    assert violation["message_en"]

    outsider = await api.user("kari", "operator", unit="trondheim")
    assert (await api.client.get(url, headers=outsider)).status_code == 403
    assert (await api.client.get(url)).status_code == 401
    missing = await api.client.get("/api/v1/incidents/nope/violations", headers=admin)
    assert missing.status_code == 404
