"""The review page of one incident: filters (a GET form, submitted here), the course chart,
the board replayed at a time (page and JSON API), masking with the unmasked read audited,
and the link from the incident page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any

import httpx

from notifiers import logbook
from tests.conftest import ApiHarness

INCIDENT = {
    "type": "personal_alarm",
    "title": "Personalarm utløst, avdeling A",
    "unit": "agder-froland",
    "severity": 3,
}


class _Forms(HTMLParser):
    """The fields of one form: action, hidden/named inputs and each select's options."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.action = form_id, False, ""
        self.inputs: dict[str, str] = {}
        self.selects: dict[str, list[tuple[str, bool]]] = {}
        self._select: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == self.form_id:
            self.inside, self.action = True, a["action"]
        elif self.inside and tag == "input" and a.get("name"):
            self.inputs[a["name"]] = a.get("value", "")
        elif self.inside and tag == "select":
            self._select = a["name"]
            self.selects[a["name"]] = []
        elif self.inside and tag == "option" and self._select:
            self.selects[self._select].append((a["value"], "selected" in a))

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None


def _form(html: str, form_id: str) -> _Forms:
    parser = _Forms(form_id)
    parser.feed(html)
    assert parser.action, f"no form {form_id}"
    return parser


def _query(form: _Forms, **choose: str | list[str]) -> list[tuple[str, str]]:
    """What a browser submits: the inputs, each select's selected options, ``choose`` winning;
    every chosen value must be one the form offers."""
    out = [(k, str(choose.get(k, v))) for k, v in form.inputs.items()]
    for name, options in form.selects.items():
        if name in choose:
            wanted = choose[name]
            values = [wanted] if isinstance(wanted, str) else wanted
            offered = {v for v, _ in options}
            assert set(values) <= offered, (name, values, offered)
            out += [(name, v) for v in values]
        else:
            out += [(name, v) for v, selected in options if selected]
    return out


def _seqs(html: str) -> list[int]:
    rows = html.split('id="rows"', 1)[1]
    return [int(s) for s in re.findall(r'<li class="entry[^"]*" data-seq="(\d+)"', rows)]


@asynccontextmanager
async def _scenario(api: ApiHarness) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, Any]]]:
    """An incident with a task, failed and sent deliveries of one update, an escalation and
    an observation naming an inmate; yields the operator's logged-in client and its facts."""
    op = await api.user("op", "operator", unit="agder-froland")
    r = await api.client.post("/api/v1/incidents", json=INCIDENT, headers=op)
    iid = r.json()["id"]
    url = f"/api/v1/incidents/{iid}"

    async def entry(**body: Any) -> dict[str, Any]:
        r = await api.client.post(f"{url}/entries", json=body, headers=op)
        assert r.status_code == 201, r.text
        return dict(r.json())

    task = await entry(
        kind="task", title="Kontroller celle A2-114", responsible_role="on_duty", text=""
    )
    async with api.app.state.sessions() as session:
        await logbook.write(
            session,
            [
                logbook.Receipt(
                    iid,
                    f"Varsel {status}: staff/{who}",
                    {"update_id": "u1", "group": "staff", "recipient": who, "status": status},
                )
                for who, status in [("+4740000001", "queued"), ("+4740000002", "queued")]
            ]
            + [
                logbook.Receipt(
                    iid,
                    "Varsel failed",
                    {
                        "update_id": "u1",
                        "group": "staff",
                        "recipient": "+4740000001",
                        "status": "failed",
                    },
                )
            ],
        )
        await session.commit()
    esc = await api.client.post(
        f"{url}/escalate", json={"to": "region", "reason": "alvorlig"}, headers=op
    )
    assert esc.status_code == 201, esc.text
    await entry(kind="task_update", task=task["seq"], status="done", text="")
    await entry(kind="observation", text="Innsatt funnet", inmate_ref="K-1234")
    timeline = (await api.client.get(f"{url}/timeline", headers=op)).json()
    async with api.login("op") as client:
        yield client, {"id": iid, "headers": op, "timeline": timeline, "escalation": esc.json()}


async def test_the_review_page_filters_by_its_get_form(api: ApiHarness) -> None:
    async with _scenario(api) as (client, facts):
        iid, timeline = facts["id"], facts["timeline"]
        page = await client.get(f"/incidents/{iid}/review")
        assert page.status_code == 200, page.text
        # every entry once, the three receipts of update u1 folded into one row
        receipts = [e["seq"] for e in timeline if e["kind"] == "message"]
        assert len(receipts) == 3
        assert _seqs(page.text) == [e["seq"] for e in timeline if e["seq"] not in receipts[1:]]
        assert 'data-update="u1"' in page.text
        assert re.search(r'data-status="failed">[^<]*: 1<', page.text)
        assert re.search(r'data-status="queued">[^<]*: 1<', page.text)

        form = _form(page.text, "filter-form")
        assert form.action == f"/incidents/{iid}/review"
        narrowed = await client.get(form.action, params=_query(form, kind=["escalation"]))
        assert narrowed.status_code == 200
        escalations = [e["seq"] for e in timeline if e["kind"] == "escalation"]
        assert _seqs(narrowed.text) == escalations == [facts["escalation"]["seq"]]
        # the narrowed page's form keeps the choice, and the next filter narrows further
        again = _form(narrowed.text, "filter-form")
        assert ("escalation", True) in again.selects["kind"]
        by_group = await client.get(form.action, params=_query(form, group="staff"))
        assert _seqs(by_group.text) == [receipts[0]]
        by_actor = await client.get(form.action, params=_query(form, actor="user:op"))
        assert _seqs(by_actor.text) == [
            e["seq"] for e in timeline if e["actor"] == "user:op" and e["kind"] != "message"
        ]
        hidden = await client.get(form.action, params=_query(form, events="hide"))
        assert len(_seqs(hidden.text)) == len(_seqs(page.text))  # no source events here


async def test_the_chart_and_the_slots_for_metrics_and_report(api: ApiHarness) -> None:
    async with _scenario(api) as (client, facts):
        page = (await client.get(f"/incidents/{facts['id']}/review")).text
        assert '<svg xmlns="http://www.w3.org/2000/svg" class="course" role="img"' in page
        assert 'data-lane="escalations" data-count="1"' in page
        assert 'data-lane="messages" data-count="3"' in page
        assert f'href="/api/v1/incidents/{facts["id"]}/report?format=pdf"' in page
        metrics = (await client.get(f"/api/v1/incidents/{facts['id']}/metrics")).json()
        assert f'id="metrics" data-incident="{facts["id"]}"' in page
        assert len(metrics["escalations"]) == 1
        assert page.count('data-moment="escalation"') == len(metrics["escalations"])
        assert '<script src="/static/review.js" defer></script>' in page
        assert "<script>" not in page  # no inline script (CSP)
        js = await client.get("/static/review.js")
        assert js.status_code == 200 and "replay-slider" in js.text
        english = (await client.get(f"/incidents/{facts['id']}/review?lang=en")).text
        assert "Course of the incident" in english and "The board as it was" in english


async def test_the_board_replayed_at_a_time(api: ApiHarness) -> None:
    async with _scenario(api) as (client, facts):
        iid, timeline, op = facts["id"], facts["timeline"], facts["headers"]
        esc_seq = facts["escalation"]["seq"]
        page = (await client.get(f"/incidents/{iid}/review")).text
        form = _form(page, "replay-form")
        # one stop per distinct entry time (the bulk receipts share one), the last one first
        stops = sorted({e["at"] for e in timeline})
        assert len(stops) < len(timeline) and form.inputs["n"] == str(len(stops))
        esc_stop = stops.index(facts["escalation"]["at"]) + 1
        assert 'id="replay-level" data-level="region"' in page
        # the slider's GET form, moved to the entry before the escalation
        before = await client.get(
            form.action.split("#")[0], params=_query(form, n=str(esc_stop - 1))
        )
        assert 'id="replay-level" data-level="unit"' in before.text
        assert re.search(r'data-task="\d+" data-status="not_started"', before.text)
        assert 'data-status="failed">' in before.text  # the failure came before
        # the same through the API, at the escalation's own time
        api_url = f"/api/v1/incidents/{iid}/replay"
        at_esc = (
            await api.client.get(api_url, params={"at": facts["escalation"]["at"]}, headers=op)
        ).json()
        earlier = timeline[esc_seq - 2]["at"]
        at_before = (await api.client.get(api_url, params={"at": earlier}, headers=op)).json()
        assert (at_before["level"], at_esc["level"]) == ("unit", "region")
        assert at_esc["seq"] == esc_seq and at_esc["unit_name"]
        assert at_before["groups"] == [
            {
                "update_id": "u1",
                "group": "staff",
                "counts": {"failed": 1, "queued": 1},
                "worst": "failed",
                "last_at": at_before["groups"][0]["last_at"],
            }
        ]
        last = (await api.client.get(api_url, headers=op)).json()
        assert [t["status"] for t in last["tasks"]] == ["done"]
        assert last["times"] == sorted(set(last["times"])) and len(last["times"]) >= 2
        # an ISO ?at= (the timeline's time links) replays the page too
        linked = await client.get(f"/incidents/{iid}/review", params={"at": earlier})
        assert 'id="replay-level" data-level="unit"' in linked.text


async def test_replay_api_refuses_bad_input(api: ApiHarness) -> None:
    async with _scenario(api) as (_, facts):
        url = f"/api/v1/incidents/{facts['id']}/replay"
        other = await api.user("ringerike-op", "operator", unit="ringerike")
        assert (await api.client.get(url, headers=other)).status_code == 403
        assert (
            await api.client.get("/api/v1/incidents/nope/replay", headers=facts["headers"])
        ).status_code == 404
        bad = await api.client.get(url, params={"at": "yesterday"}, headers=facts["headers"])
        assert bad.status_code == 422
        assert (await api.client.get(url)).status_code == 401
        async with api.login("ringerike-op") as outsider:
            assert (await outsider.get(f"/incidents/{facts['id']}/review")).status_code == 403
            assert (await outsider.get("/incidents/nope/review")).status_code == 404


async def test_masked_for_roles_without_need_and_the_unmasked_read_audited(
    api: ApiHarness,
) -> None:
    async with _scenario(api) as (client, facts):
        iid = facts["id"]
        mine = (await client.get(f"/incidents/{iid}/review")).text
        assert "K-1234" in mine and "+4740000002" in mine
        await api.user("komm", "communication")
        async with api.login("komm") as komm:
            theirs = (await komm.get(f"/incidents/{iid}/review")).text
        assert "K-1234" not in theirs and "+4740000002" not in theirs
        assert "••• (skjermet)" in theirs
        admin = await api.user("admin", "admin")
        rows = (
            await api.client.get(f"/api/v1/audit/access?incident_id={iid}", headers=admin)
        ).json()
        review = [r for r in rows if r["channel"] == "review"]
        assert [r["actor"] for r in review] == ["user:op"] and "K-1234" in review[0]["refs"]


async def test_the_incident_page_links_to_the_review_open_and_closed(api: ApiHarness) -> None:
    async with _scenario(api) as (client, facts):
        iid = facts["id"]
        link = f'href="/incidents/{iid}/review"'
        assert link in (await client.get(f"/incidents/{iid}")).text
        closed = await api.client.post(
            f"/api/v1/incidents/{iid}/close",
            json={"reason": "avklart", "final_situation": "normal drift"},
            headers=facts["headers"],
        )
        assert closed.status_code == 201
        assert link in (await client.get(f"/incidents/{iid}")).text
        review = (await client.get(f"/incidents/{iid}/review")).text
        assert 'id="replay-status" data-status="closed"' in review
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api.app), base_url="http://testserver"
        ) as anon:
            r = await anon.get(f"/incidents/{iid}/review")
            assert r.status_code == 303 and "/login" in r.headers["location"]
