"""The incident page's actions in Debian's chromium, each result checked through the API:
add a task, tick its checklist, mark a contact contacted, change severity and owner, correct
an entry, escalate (the header follows live), approve a report with unsaved edits."""

from __future__ import annotations

from typing import Any

import pytest

from tests.boardserver import BoardServer
from tests.web.test_board_browser import _entry, _live, _login, _open, board, browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]
__all__ = ["board", "browser"]  # the fixtures, shared with the board's browser tests

MS = 5000


def _timeline(board: BoardServer, incident_id: str, who: str = "op") -> list[dict[str, Any]]:
    r = board.api("GET", f"/api/v1/incidents/{incident_id}/timeline", who)
    assert r.status_code == 200, r.text
    return list(r.json())


def _wait_for_entry(page: Any, board: BoardServer, iid: str, kind: str, n: int = 1) -> list[Any]:
    """The entries of ``kind`` once there are ``n`` (the form's POST has landed)."""
    for _ in range(50):
        found = [e for e in _timeline(board, iid) if e["kind"] == kind]
        if len(found) >= n:
            return found
        page.wait_for_timeout(100)
    raise AssertionError(f"no {kind} entry #{n} in the log")


def test_add_a_task_then_tick_its_checklist(browser: Any, board: BoardServer) -> None:
    from playwright.sync_api import expect

    iid = _open(board)["id"]
    page = _login(browser, board, "op", f"/incidents/{iid}")
    _live(page)
    page.locator("details:has(#form-add-task) > summary").click()
    form = page.locator("#form-add-task")
    form.locator("input[name=title]").fill("Kontroller celle A2-114")
    form.locator("select[name=responsible_role]").select_option("on_duty")
    form.locator("textarea[name=checklist]").fill("To betjenter\nMeld tilbake")
    form.locator("button").click()
    (task,) = _wait_for_entry(page, board, iid, "task")
    assert task["data"]["checklist"] == ["To betjenter", "Meld tilbake"]
    tasks = page.locator("#panel-tasks")
    expect(tasks).to_contain_text("Kontroller celle A2-114", timeout=MS)
    expect(tasks).to_contain_text("vakthavende")
    page.locator(f"#tick-{task['seq']}-1 button").click()
    (tick,) = _wait_for_entry(page, board, iid, "task_update")
    assert tick["data"] == {"task": task["seq"], "item": 1, "done": True}
    expect(page.locator(f"#tick-{task['seq']}-1")).to_have_count(0, timeout=MS)
    expect(tasks.locator("li.done")).to_have_text("☑ Meld tilbake (Utført)")
    page.context.close()


def test_mark_a_cooperation_contact_contacted(browser: Any, board: BoardServer) -> None:
    from playwright.sync_api import expect

    iid = _open(board)["id"]
    contact = _entry(
        board,
        iid,
        kind="cooperation_contact",
        text="Kontakt politiet",
        actor_kind="police",
        actor_name="Agder politidistrikt",
        status="to_contact",
    )
    page = _login(browser, board, "op", f"/incidents/{iid}")
    _live(page)
    panel = page.locator("#panel-contacts")
    expect(panel).to_contain_text("skal kontaktes")
    page.locator(f"#contact-{contact['seq']}-contacted button").click()
    updates = _wait_for_entry(page, board, iid, "cooperation_contact", 2)
    assert updates[-1]["data"] == {"contact": contact["seq"], "status": "contacted"}
    expect(panel.locator("tr.contact")).to_have_count(1)
    expect(panel.locator("tr.contact [data-status]")).to_have_text("kontaktet", timeout=MS)
    page.context.close()


def test_change_severity_and_owner_from_the_page(browser: Any, board: BoardServer) -> None:
    from playwright.sync_api import expect

    iid = _open(board, severity=3)["id"]
    page = _login(browser, board, "op", f"/incidents/{iid}")
    _live(page)
    page.locator("details:has(#form-severity) > summary").click()
    form = page.locator("#form-severity")
    form.locator("select[name=severity]").select_option("5")
    form.locator("textarea[name=text]").fill("Røykutvikling i to avdelinger")
    form.locator("button").click()
    (decision,) = _wait_for_entry(page, board, iid, "decision")
    assert decision["data"]["severity"] == 5
    expect(page.locator("#incident-severity")).to_have_text("5", timeout=MS)
    page.context.close()

    # handing over to Mandal takes the incident out of the Froland operator's scope: KDI does
    page = _login(browser, board, "kdi", f"/incidents/{iid}")
    _live(page)
    page.locator("details:has(#form-owner) > summary").click()
    form = page.locator("#form-owner")
    form.locator("select[name=new_owner]").select_option("agder-mandal")
    form.locator("select[name=new_accountable_role]").select_option("leader")
    form.locator("textarea[name=text]").fill("Mandal overtar ansvaret")
    form.locator("button").click()
    expect(page.locator("#incident-owner")).to_contain_text("Mandal", timeout=MS)
    owner = [e for e in _timeline(board, iid, "kdi") if e["kind"] == "decision"][-1]
    assert (owner["data"]["new_owner"], owner["data"]["new_accountable_role"]) == (
        "agder-mandal",
        "leader",
    )
    page.context.close()


def test_correct_a_log_entry(browser: Any, board: BoardServer) -> None:
    from playwright.sync_api import expect

    iid = _open(board)["id"]
    wrong = _entry(board, iid, kind="observation", text="Brann i avdeling B")
    page = _login(browser, board, "op", f"/incidents/{iid}")
    _live(page)
    page.locator("details:has(#form-correction) > summary").click()
    form = page.locator("#form-correction")
    form.locator("select[name=corrects]").select_option(str(wrong["seq"]))
    form.locator("textarea[name=text]").fill("Brannen er i avdeling C, ikke B")
    form.locator("button").click()
    (correction,) = _wait_for_entry(page, board, iid, "correction")
    assert (correction["corrects"], correction["text"]) == (
        wrong["seq"],
        "Brannen er i avdeling C, ikke B",
    )
    expect(page.locator("#timeline")).to_contain_text("avdeling C, ikke B", timeout=MS)
    page.context.close()


def test_escalate_one_level_and_the_header_follows_live(browser: Any, board: BoardServer) -> None:
    from playwright.sync_api import expect

    iid = _open(board)["id"]
    page = _login(browser, board, "op", f"/incidents/{iid}")
    _live(page)
    page.locator("details:has(#form-escalate) > summary").click()
    form = page.locator("#form-escalate")
    form.locator("select[name=to]").select_option("jd")
    form.locator("textarea[name=reason]").fill("Flere skadde")
    form.locator("button").click()
    expect(form.locator(".form-errors")).to_contain_text("nærhetsprinsippet")
    assert not [e for e in _timeline(board, iid) if e["kind"] == "escalation"]
    form.locator("select[name=to]").select_option("region")
    form.locator("button").click()
    (esc,) = _wait_for_entry(page, board, iid, "escalation")
    assert esc["data"]["to"] == "region"
    expect(page.locator("#incident-level")).to_have_text("regionnivå", timeout=MS)
    # another person escalates further: the open page's header follows without a reload
    r = board.api(
        "POST",
        f"/api/v1/incidents/{iid}/escalate",
        "kdi",
        json={"to": "kdi", "reason": "Nasjonalt"},
    )
    assert r.status_code == 201, r.text
    page.wait_for_function(
        "() => document.getElementById('incident-level').dataset.level === 'kdi'", timeout=MS
    )
    expect(page.locator("#incident-level")).to_have_text("direktoratsnivå (KDI)")
    expect(page.locator("#timeline")).to_contain_text("Eskalert fra regionnivå til direktoratsnivå")
    page.context.close()


def test_approving_a_report_with_unsaved_edits_approves_the_edited_text(
    browser: Any, board: BoardServer
) -> None:
    from playwright.sync_api import expect

    iid = _open(board)["id"]
    r = board.api("POST", f"/api/v1/incidents/{iid}/sitreps", "op")
    assert r.status_code == 201, r.text
    sitrep = r.json()
    page = _login(browser, board, "op", f"/sitreps/{sitrep['id']}")
    page.locator("#form-sitrep-version textarea[name=situation]").fill("Brannen er slukket.")
    page.locator("#form-sitrep-approve button").click()
    expect(page.locator("#sitrep-status")).to_have_text("Godkjent", timeout=MS)
    got = board.api("GET", f"/api/v1/sitreps/{sitrep['id']}", "op").json()
    assert got["approved_version"] == 2
    approved = next(v for v in got["versions"] if v["version"] == 2)
    assert approved["situation"] == "Brannen er slukket."
    log = [e for e in _timeline(board, iid) if e["kind"] == "situation_report"]
    assert [e["data"]["action"] for e in log] == ["version", "version", "approved"]
    assert log[-1]["data"]["version"] == 2
    page.context.close()


def test_a_refused_save_approves_nothing(browser: Any, board: BoardServer) -> None:
    from playwright.sync_api import expect

    iid = _open(board)["id"]
    sitrep = board.api("POST", f"/api/v1/incidents/{iid}/sitreps", "op").json()
    page = _login(browser, board, "op", f"/sitreps/{sitrep['id']}")
    page.locator("#form-sitrep-version textarea[name=situation]").fill("x" * 20_001)
    page.locator("#form-sitrep-approve button").click()
    expect(page.locator("#form-sitrep-approve .form-errors")).to_contain_text("Ikke godkjent")
    got = board.api("GET", f"/api/v1/sitreps/{sitrep['id']}", "op").json()
    assert got["status"] == "draft" and len(got["versions"]) == 1
    page.context.close()
