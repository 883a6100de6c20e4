"""The incident page for action: every rendered form submitted as the board's script sends
it, each result checked through the API; the violations panel, the folded log, labels, and a
closed incident read-only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any

import httpx

from notifiers import logbook
from tests.conftest import ApiHarness

INCIDENT = {"type": "fire", "title": "Brann i verksted", "unit": "agder-froland", "severity": 3}


class _Forms(HTMLParser):
    """The page's ``form[data-api]`` elements: their endpoint and fields (name → element)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, Any]] = {}
        self._form: dict[str, Any] | None = None
        self._select: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and "data-api" in a:
            self._form = {"api": a["data-api"], "fields": {}}
            self.forms[str(a.get("id") or a["data-api"])] = self._form
        elif self._form is not None and tag in ("input", "textarea", "select") and a.get("name"):
            field = {"tag": tag, **a, "options": []}
            self._form["fields"][a["name"]] = field
            if tag == "select":
                self._select = field
        elif tag == "option" and self._select is not None:
            self._select["options"].append(a.get("value"))
            if "selected" in a:
                self._select["value"] = a.get("value")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


def forms_of(html: str) -> dict[str, dict[str, Any]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def body_of(form: dict[str, Any], **filled: Any) -> dict[str, Any]:
    """The JSON board.js would send (``formJson``): hidden values, the filled fields, typed
    by ``data-int``/``data-bool``/``data-list``; an unknown field name fails the test."""
    out: dict[str, Any] = {}
    for name in filled:
        assert name in form["fields"], f"the form has no field {name!r}"
    for name, field in form["fields"].items():
        value = filled.get(name, field.get("value"))
        if value in (None, ""):
            continue
        if field["tag"] == "select" and field["options"]:
            assert str(value) in field["options"], f"{name}: {value!r} is not offered"
        if "data-int" in field:
            value = int(value)
        if "data-bool" in field:
            value = value == "true"
        if "data-list" in field and isinstance(value, str):
            value = [line.strip() for line in value.splitlines() if line.strip()]
        out[name] = value
    return out


@asynccontextmanager
async def _op(api: ApiHarness) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    headers = await api.user("op", "operator", unit="agder-froland")
    async with api.login("op") as client:
        yield client, headers


async def _open(api: ApiHarness, headers: dict[str, str], **over: Any) -> str:
    r = await api.client.post("/api/v1/incidents", json={**INCIDENT, **over}, headers=headers)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _submit(
    client: httpx.AsyncClient, page: str, form_id: str, **filled: Any
) -> httpx.Response:
    form = forms_of(page)[form_id]
    return await client.post(form["api"], json=body_of(form, **filled))


async def _timeline(api: ApiHarness, iid: str, h: dict[str, str]) -> list[dict[str, Any]]:
    r = await api.client.get(f"/api/v1/incidents/{iid}/timeline", headers=h)
    assert r.status_code == 200
    return list(r.json())


async def test_every_action_form_of_the_incident_page_writes_through_the_api(
    api: ApiHarness,
) -> None:
    async with _op(api) as (client, h):
        iid = await _open(api, h)
        page = (await client.get(f"/incidents/{iid}")).text

        r = await _submit(
            client,
            page,
            "form-add-task",
            title="Evakuer verkstedet",
            responsible_role="region:on_duty",
            checklist="Telling\nMeld tilbake",
        )
        assert r.status_code == 201, r.text
        task = (await _timeline(api, iid, h))[-1]
        assert (task["kind"], task["data"]["title"]) == ("task", "Evakuer verkstedet")
        assert task["data"]["checklist"] == ["Telling", "Meld tilbake"]

        page = (await client.get(f"/incidents/{iid}")).text
        assert "regionens vakthavende" in page and "region:on_duty</td>" not in page
        r = await _submit(client, page, f"tick-{task['seq']}-1")
        assert r.status_code == 201, r.text
        tick = (await _timeline(api, iid, h))[-1]
        assert tick["data"] == {"task": task["seq"], "item": 1, "done": True}
        panel = (await client.get(f"/incidents/{iid}/panels")).text
        assert f"tick-{task['seq']}-1" not in panel and f"tick-{task['seq']}-0" in panel

        r = await _submit(client, page, "form-severity", severity="5", text="Spredning")
        assert r.status_code == 201, r.text
        r = await _submit(
            client,
            page,
            "form-owner",
            new_owner="agder-mandal",
            new_accountable_role="leader",
            text="Mandal overtar",
        )
        assert r.status_code == 201, r.text
        # the owner moved to Mandal: its own operator no longer reads it, the admin does
        admin = await api.user("adm", "admin")
        incident = (await api.client.get(f"/api/v1/incidents/{iid}", headers=admin)).json()
        assert (incident["severity"], incident["unit"]) == (5, "agder-mandal")
        assert incident["accountable_role"] == "leader"
        decisions = [e for e in await _timeline(api, iid, admin) if e["kind"] == "decision"]
        assert [d["data"].get("severity") for d in decisions] == [5, None]
        assert decisions[-1]["data"]["new_owner"] == "agder-mandal"
        h = admin
        async with api.login("adm") as client:
            await _rest_of_the_actions(api, client, iid, h)


async def _rest_of_the_actions(
    api: ApiHarness, client: httpx.AsyncClient, iid: str, h: dict[str, str]
) -> None:
    page = (await client.get(f"/incidents/{iid}")).text

    r = await _submit(client, page, "form-correction", corrects="1", text="Riktig: verksted B")
    assert r.status_code == 201, r.text
    correction = (await _timeline(api, iid, h))[-1]
    assert (correction["kind"], correction["corrects"]) == ("correction", 1)

    # one level at a time: the form offers the next level first; a skip is the API's 409
    assert forms_of(page)["form-escalate"]["fields"]["to"]["value"] == "region"
    skip = await _submit(client, page, "form-escalate", to="kdi", reason="Stor brann")
    assert skip.status_code == 409 and skip.json()["errors"][0]["field"] == "to"
    r = await _submit(client, page, "form-escalate", reason="Stor brann")
    assert r.status_code == 201, r.text
    page = (await client.get(f"/incidents/{iid}")).text
    assert 'id="incident-level" data-level="region">regionnivå<' in page
    assert "Eskalert fra enhetsnivå til regionnivå" in page


async def test_a_cooperation_contact_is_marked_contacted_and_its_row_replaced(
    api: ApiHarness,
) -> None:
    async with _op(api) as (client, h):
        iid = await _open(api, h)
        r = await api.client.post(
            f"/api/v1/incidents/{iid}/entries",
            json={
                "kind": "cooperation_contact",
                "text": "Kontakt brannvesenet",
                "actor_kind": "fire",
                "actor_name": "Agder brann og redning",
                "status": "to_contact",
            },
            headers=h,
        )
        seq = r.json()["seq"]
        page = (await client.get(f"/incidents/{iid}")).text
        assert "skal kontaktes" in page and ">to_contact<" not in page
        r = await _submit(client, page, f"contact-{seq}-contacted")
        assert r.status_code == 201, r.text
        entry = (await _timeline(api, iid, h))[-1]
        assert (entry["data"]["contact"], entry["data"]["status"]) == (seq, "contacted")
        panel = (await client.get(f"/incidents/{iid}/panels")).text
        assert panel.count('class="contact"') == 1 and "kontaktet" in panel
        assert f"contact-{seq}-contacted" not in panel and f"contact-{seq}-acknowledged" in panel


async def test_the_violations_panel_shows_an_overdue_life_saving_task(api: ApiHarness) -> None:
    async with _op(api) as (client, h):
        iid = await _open(api, h, type="breath_motion_absent", severity=5)
        r = await api.client.post(
            f"/api/v1/incidents/{iid}/entries",
            json={
                "kind": "task",
                "title": "Gå til cellen",
                "responsible_role": "on_duty",
                "deadline": "2020-01-01T00:00:00Z",
            },
            headers=h,
        )
        assert r.status_code == 201
        api_view = await api.client.get(f"/api/v1/incidents/{iid}/violations", headers=h)
        codes = [v["code"] for v in api_view.json()["violations"]]
        assert "task_overdue" in codes
        page = (await client.get(f"/incidents/{iid}")).text
        assert 'data-code="task_overdue"' in page and "Ingen registrerte brudd" not in page
        assert "Gå til cellen" in page.split('id="incident-overdue"')[1].split("</dd>")[0]
        english = (await client.get(f"/incidents/{iid}?lang=en")).text
        assert "Responsibility principle" in english


async def test_the_log_folds_deliveries_per_update_and_filters(api: ApiHarness) -> None:
    async with _op(api) as (client, h):
        iid = await _open(api, h)
        async with api.app.state.sessions() as session:  # as the notifiers write them
            receipts = [
                logbook.Receipt(
                    iid,
                    "SMS",
                    {
                        "update_id": "u1",
                        "group": g,
                        "recipient": who,
                        "channel": "sms",
                        "status": status,
                        "attempt": 1,
                    },
                )
                for g, who, status in (
                    ("staff", "a", "queued"),
                    ("staff", "a", "sent"),
                    ("staff", "b", "failed"),
                    ("leaders", "c", "sent"),
                )
            ]
            await logbook.write(session, receipts)
            await session.commit()
        page = (await client.get(f"/incidents/{iid}/log")).text  # the page's log alone
        assert page.count('data-update="u1"') == 1, "four receipts, one line"
        line = page.split('data-update="u1"')[1].split("</summary>")[0]
        assert "ansatte:" in line and "1 sendt" in line and "1 feilet" in line
        assert "ledere:" in line
        only = (await client.get(f"/incidents/{iid}/log?kind=incident_opened")).text
        assert 'data-update="u1"' not in only and 'data-kind="incident_opened"' in only


async def test_a_closed_incident_is_read_only_on_its_page(api: ApiHarness) -> None:
    async with _op(api) as (client, h):
        iid = await _open(api, h)
        await api.client.post(
            f"/api/v1/incidents/{iid}/entries",
            json={"kind": "cooperation_contact", "actor_kind": "fire", "actor_name": "B"},
            headers=h,
        )
        close = {"reason": "Slukket", "final_situation": "Normal drift"}
        r = await api.client.post(f"/api/v1/incidents/{iid}/close", json=close, headers=h)
        assert r.status_code == 201
        page = (await client.get(f"/incidents/{iid}")).text
        assert set(forms_of(page)) == {"form-reopen"}
        assert 'id="countdown"' not in page and "bare lesing" in page
