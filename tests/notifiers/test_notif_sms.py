"""SMS segment counting (GSM-7 versus UCS-2) and the fitting rule."""

from __future__ import annotations

import pytest

from notifiers import sms


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("a" * 160, "gsm7", 160, 1),
        ("a" * 161, "gsm7", 161, 2),  # concatenated: 153 per segment
        ("a" * 306, "gsm7", 306, 2),
        ("a" * 307, "gsm7", 307, 3),
        ("Blåøyd ærfugl på Ørland" * 1, "gsm7", 23, 1),  # æøå are GSM-7
        ("€" * 80, "gsm7", 160, 1),  # an extension character costs two septets
        ("€" * 81, "gsm7", 162, 2),
        ("ł" * 70, "ucs2", 70, 1),  # Polish ł forces UCS-2
        ("ł" * 71, "ucs2", 71, 2),  # 67 per segment
        ("ė" * 134, "ucs2", 134, 2),
        ("ė" * 135, "ucs2", 135, 3),
        ("مرحبا", "ucs2", 5, 1),
        ("🔥" * 35, "ucs2", 70, 1),  # outside the BMP: two UTF-16 units each
        ("🔥" * 36, "ucs2", 72, 2),
    ],
)
def test_segment_counting(text: str, encoding: str, units: int, segments: int) -> None:
    assert sms.count(text) == sms.SmsCount(encoding, units, segments)


def test_a_text_that_fits_is_unchanged() -> None:
    text = "Kort melding.\nNeste oppdatering kommer 22.11.2026 kl. 15:30."
    assert sms.fit_sms(text, 1) == text


@pytest.mark.parametrize("max_segments", [1, 2, 3])
def test_long_gsm_text_is_cut_at_a_word_and_keeps_the_next_update_line(max_segments: int) -> None:
    tail = "Neste oppdatering kommer 22.11.2026 kl. 15:30. Bekreft: svar K7Q2"
    text = "ØVELSE ØVELSE ØVELSE\n" + " ".join(["røykutvikling"] * 80) + "\n" + tail
    fitted = sms.fit_sms(text, max_segments)
    assert sms.count(fitted).segments <= max_segments
    assert sms.count(fitted).encoding == "gsm7"  # the cut mark is '...' so it stays GSM-7
    head, _, kept_tail = fitted.rpartition("\n")
    assert kept_tail == tail
    assert head.startswith("ØVELSE ØVELSE ØVELSE\n")
    assert head.endswith("røykutvikling...")  # cut between words, never inside one
    # as long as allowed: one more word would not fit
    longer = head.removesuffix("...") + " røykutvikling...\n" + tail
    assert sms.count(longer).segments > max_segments


def test_long_ucs2_text_counts_in_utf16_units() -> None:
    tail = "Następna informacja: 22.11.2026 kl. 15:30."
    text = " ".join(["Ewakuacja oddziału"] * 40) + "\n" + tail
    fitted = sms.fit_sms(text, 2)
    assert sms.count(fitted).encoding == "ucs2"
    assert sms.count(fitted).segments == 2
    assert fitted.endswith("…\n" + tail)
