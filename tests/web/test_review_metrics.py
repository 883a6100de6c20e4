"""Response metrics over HTTP: the incident endpoint, the aggregate endpoint, the statistics
page's form (submitted, compared with the API) and the ``_metrics.html`` partial."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

from crisis.review.metrics import incident_metrics
from crisis.review.metrics_service import metrics_for_incident
from tests.conftest import ApiHarness
from tests.review.scripted import EXPECTED, T0, scripted_incident
from web.board import i18n
from web.board.pages import environment

RESPONSE = "/api/v1/metrics/response"


async def _seed(api: ApiHarness) -> None:
    async with api.app.state.sessions() as session:
        await scripted_incident(session, incident_id="r1")
        await scripted_incident(
            session, incident_id="r2", public_first=True, t0=T0 + timedelta(days=9)
        )
        await scripted_incident(session, incident_id="r3", unit="trondheim", incident_type="fire")
        await scripted_incident(session, incident_id="x1", exercise="ovelse-1")
        await session.commit()


async def test_incident_metrics_endpoint(api: ApiHarness) -> None:
    await _seed(api)
    op = await api.user("op", "operator", unit="agder-froland")
    other = await api.user("other", "operator", unit="trondheim")
    r = await api.client.get("/api/v1/incidents/r1/metrics", headers=op)
    assert r.status_code == 200, r.text
    body = r.json()
    for key, value in EXPECTED.items():
        assert body[key] == value, key
    assert body["region"] == "sorvest" and body["incident_id"] == "r1"
    late = (await api.client.get("/api/v1/incidents/r2/metrics", headers=op)).json()
    assert late["staff_before_public"] is False
    exercise = await api.client.get("/api/v1/incidents/x1/metrics", headers=op)
    assert exercise.status_code == 200 and exercise.json()["exercise"] == "ovelse-1"
    refused = await api.client.get("/api/v1/incidents/r1/metrics", headers=other)
    assert refused.status_code == 403
    missing = await api.client.get("/api/v1/incidents/nope/metrics", headers=op)
    assert missing.status_code == 404 and missing.json()["errors"][0]["field"] == "id"
    assert (await api.client.get("/api/v1/incidents/r1/metrics")).status_code == 401


async def test_response_metrics_scope_filters_and_bad_values(api: ApiHarness) -> None:
    await _seed(api)
    kdi = await api.user("kdi", "kdi")
    op = await api.user("op", "operator", unit="agder-froland")
    jd = await api.user("jd", "ministry")
    whole = (await api.client.get(f"{RESPONSE}?group_by=all", headers=kdi)).json()
    assert whole["incidents"] == 3, "exercises never enter statistics"
    assert whole["groups"][0]["staff_before_public"] == {"judged": 3, "held": 2, "share": 2 / 3}
    mine = (await api.client.get(RESPONSE, headers=op)).json()
    assert mine["group_by"] == "unit"
    assert [(g["key"], g["incidents"]) for g in mine["groups"]] == [("agder-froland", 2)]
    assert (await api.client.get(RESPONSE, headers=jd)).json()["incidents"] == 0, (
        "the ministry sees incidents escalated to it only"
    )
    by_region = (await api.client.get(f"{RESPONSE}?group_by=region", headers=kdi)).json()
    assert {g["key"]: g["incidents"] for g in by_region["groups"]} == {"nord": 1, "sorvest": 2}
    # 2026-11-22 in Oslo holds r1 and r3; the day r2 opened is left out
    day = (await api.client.get(f"{RESPONSE}?from=2026-11-22&to=2026-11-22", headers=kdi)).json()
    assert day["incidents"] == 2 and day["filters"]["from"] == "2026-11-22"
    typed = await api.client.get(f"{RESPONSE}?type=fire&region=nord&group_by=type", headers=kdi)
    assert [(g["key"], g["incidents"]) for g in typed.json()["groups"]] == [("fire", 1)]
    for query, field in (
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("to=9999-12-31", "to"),  # the day after is past the calendar
        ("from=0001-01-01T00:00:00%2B05:00", "from"),
        ("from=2026-11-23&to=2026-11-22", "to"),
        ("unit=nowhere", "unit"),
        ("region=atlantis", "region"),
        ("type=Not%20a%20type", "type"),
        ("group_by=year", "group_by"),
    ):
        r = await api.client.get(f"{RESPONSE}?{query}", headers=kdi)
        assert r.status_code == 422, query
        assert r.json()["errors"][0]["field"] == field, query


class _Form(HTMLParser):
    """The fields of the page's filter form: name → (kind, options)."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, list[str]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and a.get("id") == "form-statistics":
            self.action = str(a.get("action"))
        elif tag == "input" and a.get("name"):
            self.fields[str(a["name"])] = []
        elif tag == "select":
            self._select = str(a["name"])
            self.fields[self._select] = []
        elif tag == "option" and self._select:
            self.fields[self._select].append(str(a.get("value")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


async def test_statistics_form_matches_the_api(api: ApiHarness) -> None:
    await _seed(api)
    kdi = await api.user("kdi", "kdi")
    async with api.login("kdi") as client:
        page = await client.get("/statistics")
        assert page.status_code == 200
        assert 'href="/statistics" aria-current="page"' in page.text, "in the navigation"
        form = _Form()
        form.feed(page.text)
        assert form.action == "/statistics"
        assert set(form.fields) == {"from", "to", "unit", "region", "type", "group_by"}
        assert "week" in form.fields["group_by"] and "sorvest" in form.fields["region"]
        query = {"from": "2026-11-01", "to": "2026-12-31", "region": "sorvest", "group_by": "week"}
        assert all(v in form.fields[k] for k, v in query.items() if form.fields[k])
        shown = await client.get(form.action, params=query)
        assert shown.status_code == 200
        api_body = (await api.client.get(RESPONSE, params=query, headers=kdi)).json()
        groups = re.findall(
            r'class="card stats-group" data-key="([^"]+)" data-incidents="(\d+)"', shown.text
        )
        assert groups == [(g["key"], str(g["incidents"])) for g in api_body["groups"]]
        assert groups == [("2026-W47", "1"), ("2026-W49", "1")]
        medians = re.findall(
            r'data-metric="staff_alarm_seconds" data-count="1" data-median="([^"]*)"', shown.text
        )
        assert medians == [
            str(g["durations"]["staff_alarm_seconds"]["median"]) for g in api_body["groups"]
        ]
        assert "2 min 10 s" in shown.text and "Responsstatistikk" in shown.text
        bad = await client.get("/statistics", params={"from": "i går"})
        assert bad.status_code == 422 and "from:" in bad.text
        english = await client.get("/statistics?lang=en&group_by=region")
        assert "Response statistics" in english.text and "Region sørvest" in english.text
    assert (await api.client.get("/statistics")).status_code == 303, "a login first"


async def test_metrics_partial_renders_one_incident(api: ApiHarness) -> None:
    await _seed(api)
    async with api.app.state.sessions() as session:
        from crisis.log.models import Incident

        incident = await session.get(Incident, "r2")
        assert incident is not None
        found = await metrics_for_incident(session, incident=incident, regions={})
    template = environment(api.app).get_template("_metrics.html")
    html = template.render(metrics=found.as_dict(), t=i18n.translator("nb"), lang="nb")
    assert 'data-staff-before-public="false"' in html and "publikum fikk vite først" in html
    # 02:41:07 UTC is 03:41:07 in Oslo (CET); the opening 23 s later
    assert 'title="UTC 2026-12-01 02:41:30">01.12.2026 03:41:30</time>' in html
    assert 'data-moment="staff_alarm" data-seconds="90.0"' in html
    assert html.count('data-moment="escalation"') == 2
    assert "data-promise=" in html and 'data-kept="false"' in html
    bare = incident_metrics(incident=incident, entries=[], now=T0, region=None)
    html = template.render(metrics=bare.as_dict(), t=i18n.translator("en"), lang="en")
    assert 'data-staff-before-public=""' in html and "no public message" in html
