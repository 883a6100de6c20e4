"""Templates: what is known, what is done, when the next update comes; approved languages only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.store.db import make_sessionmaker
from notifiers import rendering, service

FACTS = {
    "title": "Brann i avdeling A",
    "known": {"nb": "Røykutvikling i avdeling A.", "en": "Smoke in unit A."},
    "actions": {"nb": "Avdelingen er evakuert.", "en": "The unit has been evacuated."},
}
NEXT = datetime(2026, 11, 22, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize("template", ["update", "alarm", "correction", "cancellation", "sitrep"])
@pytest.mark.parametrize("language", ["nb", "en"])
def test_every_template_refuses_to_render_without_the_next_update_time(
    template: str, language: str
) -> None:
    with pytest.raises(rendering.MissingNextUpdate):
        rendering.render(template, language=language, facts=FACTS, next_update_at=None)


@pytest.mark.parametrize("language", ["nb", "en", "pl", "lt", "ar", "so"])
def test_the_update_says_what_is_known_done_and_when_next_in_oslo_time(language: str) -> None:
    r = rendering.render("update", language=language, facts=FACTS, next_update_at=NEXT)
    known = FACTS["known"].get(language, FACTS["known"]["nb"])
    assert known in r.body
    assert "15:30" in r.body  # 14:30 UTC is 15:30 in Oslo (CET)
    assert r.body.splitlines()[-1].count("15:30") == 1  # the last line: the next update


def test_exercise_messages_carry_the_prefix_and_ack_instructions() -> None:
    r = rendering.render(
        "alarm",
        language="nb",
        facts=FACTS,
        next_update_at=NEXT,
        exercise="ovelse-1",
        ack_code="K7Q2",
        ack_url="http://h/ack/K7Q2",
    )
    assert r.body.startswith("ØVELSE ØVELSE ØVELSE\nALARM: Brann i avdeling A")
    assert r.title.startswith("ØVELSE ØVELSE ØVELSE")
    assert r.body.endswith("Bekreft: svar K7Q2 eller åpne http://h/ack/K7Q2")


def test_an_sms_rendering_fits_the_segment_limit() -> None:
    long = {**FACTS, "known": "Røykutvikling i avdeling A. " * 30}
    r = rendering.render(
        "update", language="nb", facts=long, next_update_at=NEXT, for_sms=True, sms_max_segments=2
    )
    assert r.segments is not None and r.segments <= 2
    assert r.body.splitlines()[-1].startswith("Neste oppdatering kommer 22.11.2026 kl. 15:30")


def test_missing_facts_are_an_error_not_an_empty_line() -> None:
    with pytest.raises(rendering.TemplateError, match="actions"):
        rendering.render("update", language="nb", facts={"known": "x"}, next_update_at=NEXT)


def test_unapproved_translations_fall_back_to_approved_norwegian_then_english() -> None:
    assert rendering.catalogue()["update"]["pl"]["approved_by"] is None  # marked unapproved
    assert rendering.choose_language("update", ["pl", "en"]) == ("en", "pl")
    assert rendering.choose_language("update", ["lt"]) == ("nb", "lt")
    assert rendering.choose_language("update", ["xx", "en"]) == ("en", None)  # no such file
    assert rendering.choose_language("update", ["nb"]) == ("nb", None)


async def test_a_person_approves_a_translation_for_its_exact_text(engine: AsyncEngine) -> None:
    sessions = make_sessionmaker(engine)
    async with sessions() as session:
        assert rendering.choose_language(
            "update", ["pl"], await service.db_translation_approvals(session)
        ) == ("nb", "pl")
        row = await service.approve_translation(
            session, template="update", language="pl", approved_by="user:tlumacz"
        )
        await session.commit()
        assert row.sha256 == rendering.template_sha256("update", "pl")
        approvals = await service.db_translation_approvals(session)
    assert rendering.choose_language("update", ["pl"], approvals) == ("pl", None)
    # an approval of another text (an edited file) does not count
    stale = {("update", "lt", "0" * 64)}
    assert rendering.choose_language("update", ["lt"], stale) == ("nb", "lt")
