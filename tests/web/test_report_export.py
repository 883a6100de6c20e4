"""``GET /api/v1/incidents/{id}/report``: formats, masking, the audit and bad input."""

from __future__ import annotations

import pytest

from crisis.log import privacy
from tests.conftest import ApiHarness
from tests.review.scenario import INMATE, build_incident
from tests.review.test_report import pdf_text

URL = "/api/v1/incidents/inc-rep/report"


@pytest.fixture
async def incident(api: ApiHarness) -> str:
    async with api.app.state.sessions() as session:
        return await build_incident(session)


async def test_json_html_pdf(api: ApiHarness, incident: str) -> None:
    op = await api.user("leder", "operator", unit="ringerike")
    r = await api.client.get(URL, headers=op)
    assert r.status_code == 200, r.text
    doc = r.json()
    timeline = (await api.client.get(f"/api/v1/incidents/{incident}/timeline", headers=op)).json()
    assert doc["integrity"]["head_hash"] == timeline[-1]["hash"]
    assert doc["integrity"]["entry_count"] == len(timeline) and doc["integrity"]["verified"]
    assert doc["activity"][1]["persons"] == [f"inmate_ref: {INMATE}"]

    html = await api.client.get(URL, params={"format": "html", "lang": "en"}, headers=op)
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "Integrity statement" in html.text and doc["integrity"]["head_hash"] in html.text
    csp = html.headers["content-security-policy"]
    assert "style-src 'sha256-" in csp and "default-src 'none'" in csp

    pdf = await api.client.get(URL, params={"format": "pdf"}, headers=op)
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    assert doc["integrity"]["head_hash"].encode() in pdf_text(pdf.content)
    disposition = pdf.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="rapport-inc-rep-')
    assert disposition.endswith('.pdf"')


async def test_masked_for_communication_staff_and_audited(api: ApiHarness, incident: str) -> None:
    comm = await api.user("kom", "communication")
    admin = await api.user("sjef", "admin")
    for fmt in ("json", "html"):
        r = await api.client.get(URL, params={"format": fmt}, headers=comm)
        assert r.status_code == 200, r.text
        assert INMATE not in r.text and privacy.MASK in r.text
    audit = await api.client.get(
        "/api/v1/audit/access", params={"incident_id": incident}, headers=admin
    )
    rows = [(a["actor"], a["channel"], a["refs"]) for a in audit.json()]
    assert rows == [("user:kom", "report-html", []), ("user:kom", "report-json", [])]
    await api.client.get(URL, params={"format": "pdf"}, headers=admin)
    audit = await api.client.get(
        "/api/v1/audit/access", params={"incident_id": incident}, headers=admin
    )
    assert (audit.json()[0]["channel"], audit.json()[0]["refs"]) == ("report-pdf", [INMATE])


async def test_bad_input(api: ApiHarness, incident: str) -> None:
    op = await api.user("leder", "operator", unit="ringerike")
    elsewhere = await api.user("annen", "operator", unit="agder-froland")
    missing = await api.client.get("/api/v1/incidents/nope/report", headers=op)
    assert missing.status_code == 404
    for fmt in ("docx", "PDF", ""):
        refused = await api.client.get(URL, params={"format": fmt}, headers=op)
        assert refused.status_code == 406, (fmt, refused.text)
    lang = await api.client.get(URL, params={"lang": "de"}, headers=op)
    assert lang.status_code == 422 and lang.json()["errors"][0]["field"] == "lang"
    outside = await api.client.get(URL, headers=elsewhere)
    assert outside.status_code == 403
    anonymous = await api.client.get(URL)
    assert anonymous.status_code == 401
    admin = await api.user("sjef", "admin")
    audit = await api.client.get(
        "/api/v1/audit/access", params={"incident_id": incident}, headers=admin
    )
    assert audit.json() == []  # nothing refused was exported
