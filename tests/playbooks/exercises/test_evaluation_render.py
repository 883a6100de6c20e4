"""The evaluation rendered: JSON keys, HTML in Norwegian and English (ØVELSE throughout,
Oslo times, the course chart), a PDF that WeasyPrint writes without the network."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from playbooks.exercises import evaluation as ev_mod
from tests.playbooks.exercises.test_evaluation import ACK, OWNER, STAFF_FIRST, Log, Obs, at, run


def _evaluation() -> ev_mod.Evaluation:
    log = Log()
    log.owner(95)
    log.receipt(40, message_id=1, group="staff", recipient="p1", status="sent")
    log.receipt(43, message_id=4, group="families", recipient="p4", status="blocked")
    log.add(300, "escalation", "user:leder", to="region", **{"from": "unit"})
    return run(
        log,
        (OWNER, ACK, STAFF_FIRST),
        now=700,
        ended=700,
        observations=(Obs(at(200), "user:ovl", "Vakthavende <b>nølte</b>"),),
    )


def test_json_keys() -> None:
    got = json.loads(ev_mod.render_json(_evaluation()))
    assert got["exercise"] is True and got["exercise_id"].startswith("ovelse-")
    assert set(got) >= {
        "expected_actions",
        "violations",
        "deliveries",
        "observations",
        "incidents",
        "counts",
        "started_at",
        "ended_at",
    }
    for action in got["expected_actions"]:
        assert set(action) >= {
            "id",
            "action",
            "target_seconds",
            "met",
            "actual_at",
            "actual_seconds",
        }
    assert got["counts"] == {"met": 2, "missed": 1, "pending": 0, "total": 3}
    assert got["deliveries"]["blocked"] == 1


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("nb", ["ØVELSE", "Evaluering av øvelse", "oppfylt", "ikke oppfylt", "Eskaleringer"]),
        ("en", ["EXERCISE (ØVELSE)", "Exercise evaluation", "missed", "Escalations"]),
    ],
)
def test_html_in_both_languages(lang: str, words: list[str]) -> None:
    page = ev_mod.render_html(_evaluation(), lang=lang)  # type: ignore[arg-type]
    for word in words:
        assert word in page, word
    assert page.count("ØVELSE") >= 3  # the title, the banners
    assert "<svg" in page and 'class="course"' in page
    assert "19:31:35" in page  # Oslo time of the owner (18:31:35 UTC)
    assert "&lt;b&gt;nølte&lt;/b&gt;" in page and "<b>nølte" not in page


def test_pdf_starts_with_pdf_magic() -> None:
    pdf = ev_mod.render_pdf(_evaluation(), lang="nb")
    assert pdf.startswith(b"%PDF")


def test_file_names() -> None:
    ev = _evaluation()
    assert ev_mod.file_name(ev, "pdf").startswith("ovelse-evaluering-ovelse-brann-natt")
    assert ev_mod.file_name(ev, "json", lang="en").startswith("exercise-evaluation-")
    assert ev.expected_actions[0].target_seconds == timedelta(minutes=2).total_seconds()
