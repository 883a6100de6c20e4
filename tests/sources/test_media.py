"""The media article event shared by the media bridge and exercise injects."""

from __future__ import annotations

from crisis.sources.events import validate_event
from crisis.sources.media import ARTICLE_TYPE, article_event


def test_article_event_leaves_out_empty_fields_and_marks_exercises() -> None:
    data = {
        "url": "https://e.invalid/a",
        "title": "Brann",
        "summary": None,
        "mentions_units": ["u"],
    }
    raw = article_event(
        data, event_id="a1", source="/media/e.invalid", time="2026-12-03T18:30:00Z", unit="u"
    )
    env = validate_event(raw, known_units={"u"})
    assert env.type == ARTICLE_TYPE and env.unit == "u" and "summary" not in env.data
    assert "exercise" not in raw
    marked = article_event(
        data,
        event_id="a1",
        source="/exercises/x",
        time="2026-12-03T18:30:00Z",
        unit="u",
        exercise="x",
    )
    assert validate_event(marked).exercise == "x"
