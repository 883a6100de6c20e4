"""A staff incident report as a raw ``report.incident`` event (POST /api/v1/reports and drills).

The report form and the exercise injects build the same event here, so a scripted report is
judged, correlated and deduplicated exactly like one a member of staff sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from crisis.sources.catalogue import PREFIX

REPORT_TYPE: Final = PREFIX + "report.incident"
#: The personal references a report may name (masked by need-to-know in every output).
REPORT_REFS: Final = ("inmate_ref", "victim_ref", "staff_ref")
#: The report's own fields (its ``data``; ``reporter`` is set by whoever sends it).
REPORT_DATA: Final = ("category", "place", "what", "affected", "severity", *REPORT_REFS)
#: Fields of the report form that go into the envelope, not the data.
REPORT_ENVELOPE: Final = ("unit", "exercise", "time", "id")


def report_event(
    fields: Mapping[str, Any],
    *,
    reporter: str,
    unit: str,
    event_id: str,
    time: str,
    source: str | None = None,
    exercise: str | None = None,
) -> dict[str, Any]:
    """The raw event of one report; ``source`` defaults to the reporter's ``/users/NAME``."""
    raw: dict[str, Any] = {
        "specversion": "1.0",
        "id": event_id,
        "source": source or f"/users/{reporter}",
        "type": REPORT_TYPE,
        "time": time,
        "unit": unit,
        "subject": unit,
        "datacontenttype": "application/json",
        "data": {k: fields[k] for k in REPORT_DATA if k in fields} | {"reporter": reporter},
    }
    if exercise:
        raw["exercise"] = exercise
    return raw
