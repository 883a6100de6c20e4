"""Codes said in words: every code the log stores has a bokmål and an English label."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crisis.domain.organisation import BODY_ROLES, COOPERATING_ACTOR_KINDS, DAILY_ROLES
from crisis.domain.vocabulary import Level, TaskStatus
from crisis.log import labels
from crisis.sources.incident_types import INCIDENT_TYPE_LABELS


def test_every_code_of_the_vocabulary_has_a_label_in_both_languages() -> None:
    codes = {
        "level": [lvl.value for lvl in Level],
        "role": [*DAILY_ROLES, *BODY_ROLES],
        "actor_kind": list(COOPERATING_ACTOR_KINDS),
        "task": [s.value for s in TaskStatus],
        "contact": ["to_contact", "contacted", "acknowledged"],
        "type": list(INCIDENT_TYPE_LABELS),
    }
    for table, values in codes.items():
        for code in values:
            assert code in labels.TABLES[table], (table, code)
            assert labels.label(table, code, "nb") != code, (table, code)
    assert labels.role("region:on_duty") == "regionens vakthavende"
    assert labels.role("kdi:leader", "en") == "KDI's leader"
    assert labels.label("group", "nobody") == "nobody", "an unknown code is shown as it is"


def test_the_texts_the_system_writes_read_without_codes() -> None:
    said = {
        "Eskalert fra unit til region: brann": "Eskalert fra enhetsnivå til regionnivå: brann",
        "Kriteriene for nivå kdi er oppfylt (x), men hendelsen håndteres på nivå region.": (
            "Kriteriene for direktoratsnivå (KDI) er oppfylt (x), men hendelsen håndteres på "
            "regionnivå."
        ),
        "Eier: Agder, ansvarlig on_duty Kari (celle)": "Eier: Agder, ansvarlig vakthavende Kari "
        "(celle)",
        "Kontakt Agder pd (police): varsle": "Kontakt Agder pd (politiet): varsle",
        "Tiltaket «A» (region:on_duty) er ikke utført (status: not_started).": (
            "Tiltaket «A» (regionens vakthavende) er ikke utført (status: ikke startet)."
        ),
    }
    for raw, words in said.items():
        assert labels.humanise(raw) == words


@given(st.sampled_from([lvl.value for lvl in Level]), st.sampled_from([lvl.value for lvl in Level]))
def test_an_escalation_text_never_shows_a_level_code(a: str, b: str) -> None:
    text = labels.humanise(f"Eskalert fra {a} til {b}: grunn")
    assert f"fra {a} " not in text and f"til {b}:" not in text
    assert labels.humanise(text) == text, "reading twice changes nothing"
