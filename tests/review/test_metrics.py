"""Response metrics against a scripted incident whose times are known to the second, on
SQLite and PostgreSQL; the aggregate's invariants over generated incidents (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from crisis.log.models import Incident
from crisis.review import metrics
from crisis.review.metrics import IncidentMetrics, aggregate, incident_metrics
from crisis.review.metrics_service import incident_rows, metrics_for_incident, response_metrics
from crisis.store.db import make_sessionmaker
from notifiers.config import PUBLIC_KINDS, STAFF_KINDS
from tests.review.scripted import EXPECTED, T0, at, iso, scripted_incident

REGIONS = {"agder-froland": "sor", "ringerike": "sor", "trondheim": "nord"}
NOW = T0 + timedelta(days=1)


class Everything:
    """A scope that narrows nothing (a national role)."""

    def narrow(self, stmt: Any) -> Any:
        return stmt


class OnlyUnit:
    def __init__(self, unit: str) -> None:
        self.unit = unit

    def narrow(self, stmt: Any) -> Any:
        return stmt.where(Incident.unit == self.unit)


def test_group_vocabulary_matches_the_notifiers() -> None:
    assert metrics.STAFF_GROUPS == STAFF_KINDS
    assert metrics.PUBLIC_GROUPS == PUBLIC_KINDS


async def _script(engine: AsyncEngine, **kw: Any) -> None:
    async with make_sessionmaker(engine)() as session:
        await scripted_incident(session, **kw)
        await session.commit()


async def _metrics(engine: AsyncEngine, incident_id: str, now: datetime = NOW) -> dict[str, Any]:
    async with make_sessionmaker(engine)() as session:
        incident = await session.get(Incident, incident_id)
        assert incident is not None
        found = await metrics_for_incident(session, incident=incident, regions=REGIONS, now=now)
        return found.as_dict()


async def test_scripted_incident_to_the_second(engine: AsyncEngine) -> None:
    await _script(engine, incident_id="s1")
    got = await _metrics(engine, "s1")
    for key, value in EXPECTED.items():
        assert got[key] == value, key
    assert got["region"] == "sor" and got["measured_until"] == iso(7800)
    assert [
        (e["from_level"], e["to_level"], e["seconds"], e["by"]) for e in got["escalations"]
    ] == [
        ("unit", "region", 300.0, "rule"),
        ("region", "kdi", 1500.0, "person"),
    ]
    tasks = {t["card"]: t for t in got["tasks"]}
    assert tasks["a"]["overdue_seconds"] is None and tasks["a"]["done_at"] == iso(480)
    assert tasks["b"]["overdue_seconds"] == 300.0
    assert tasks["c"]["overdue_seconds"] == 6000.0 and tasks["c"]["done_at"] is None
    assert [(p["due"], p["kept"], p["late_seconds"]) for p in got["promises"]] == [
        (iso(3600), True, None),
        (iso(6600), False, 300.0),
        (iso(10500), None, None),  # closed before it fell due
    ]


async def test_open_incident_is_measured_at_now(engine: AsyncEngine) -> None:
    await _script(engine, incident_id="s2", close=False)
    got = await _metrics(engine, "s2", now=at(12000))
    assert got["closed_at"] is None and got["measured_until"] == iso(12000)
    assert got["overdue_max_seconds"] == 12000.0 - 1800.0
    assert [p["kept"] for p in got["promises"]] == [True, False, False]
    assert got["promises"][2]["late_seconds"] == 1500.0


async def test_public_before_staff_shows_false(engine: AsyncEngine) -> None:
    await _script(engine, incident_id="s3", public_first=True)
    got = await _metrics(engine, "s3")
    assert got["staff_before_public"] is False
    assert got["public_seconds"] == 62.0 and got["staff_alarm_seconds"] == 90.0


async def test_moments_that_never_happened_are_null(engine: AsyncEngine) -> None:
    from crisis.log.append import open_incident
    from crisis.log.models import IncidentCreate

    async with make_sessionmaker(engine)() as session:
        await open_incident(
            session,
            incident=IncidentCreate(type="fire", title="Brann", unit="ringerike", severity=3),
            actor="user:op",
            at=T0,
            incident_id="bare",
        )
        await session.commit()
    got = await _metrics(engine, "bare")
    assert got["start_basis"] == "opening" and got["start_at"] == iso(0)
    for key in (
        "first_event_at",
        "detection_seconds",
        "owner_seconds",
        "staff_alarm_seconds",
        "first_ack_seconds",
        "public_seconds",
        "first_escalation_seconds",
        "staff_before_public",
        "overdue_max_seconds",
        "first_sitrep_seconds",
        "sitrep_interval_max_seconds",
    ):
        assert got[key] is None, key
    assert got["escalations"] == [] and got["tasks_overdue"] == 0


async def test_aggregate_leaves_out_exercises_and_narrows_by_scope(engine: AsyncEngine) -> None:
    await _script(engine, incident_id="r1")
    await _script(engine, incident_id="r2", public_first=True, t0=T0 + timedelta(days=9))
    await _script(engine, incident_id="r3", unit="trondheim", incident_type="fire")
    await _script(engine, incident_id="x1", exercise="ovelse-1")
    async with make_sessionmaker(engine)() as session:
        whole = await response_metrics(
            session, scope=Everything(), regions=REGIONS, group_by="all", now=NOW
        )
        by_region = await response_metrics(
            session, scope=Everything(), regions=REGIONS, group_by="region", now=NOW
        )
        weeks = await response_metrics(
            session, scope=Everything(), regions=REGIONS, group_by="week", now=NOW
        )
        mine = await incident_rows(session, scope=OnlyUnit("trondheim"), regions=REGIONS, now=NOW)
        window = await incident_rows(
            session,
            scope=Everything(),
            regions=REGIONS,
            start=T0 + timedelta(days=1),
            end=T0 + timedelta(days=10),
            now=NOW,
        )
        typed = await incident_rows(
            session, scope=Everything(), regions=REGIONS, region="sor", incident_type="fire"
        )
    assert whole["incidents"] == 3, "the exercise never enters statistics"
    [group] = whole["groups"]
    assert group["staff_before_public"] == {"judged": 3, "held": 2, "share": 2 / 3}
    staff = group["durations"]["staff_alarm_seconds"]
    assert staff == {"count": 3, "median": 130.0, "p90": 130.0, "max": 130.0}
    public = group["durations"]["public_seconds"]  # 62 s for the public-first one
    assert public == {"count": 3, "median": 660.0, "p90": 660.0, "max": 660.0}
    assert group["promises"] == {"kept": 3, "broken": 3, "share_kept": 0.5}
    assert {g["key"]: g["incidents"] for g in by_region["groups"]} == {"nord": 1, "sor": 2}
    assert {g["key"]: g["incidents"] for g in weeks["groups"]} == {"2026-W47": 2, "2026-W49": 1}
    assert [r.incident_id for r in mine] == ["r3"]
    assert [r.incident_id for r in window] == ["r2"]
    assert typed == []


# --- the aggregate over generated rows ----------------------------------------------------

_BASE = incident_metrics(
    incident=Incident(
        id="g", type="fire", unit="agder-froland", severity=3, title="t", opened_at=T0
    ),
    entries=[],
    now=T0,
    region="sor",
)
_seconds = st.one_of(st.none(), st.floats(min_value=0, max_value=1e6, allow_nan=False))


@st.composite
def _rows(draw: st.DrawFn) -> IncidentMetrics:
    return replace(
        _BASE,
        incident_id=draw(st.text("abc", min_size=1, max_size=4)),
        unit=draw(st.sampled_from(["agder-froland", "ringerike", "trondheim"])),
        type=draw(st.sampled_from(["fire", "escape"])),
        exercise=draw(st.one_of(st.none(), st.just("ovelse"))),
        opened_at=T0 + timedelta(hours=draw(st.integers(0, 24 * 90))),
        staff_before_public=draw(st.one_of(st.none(), st.booleans())),
        **{name: draw(_seconds) for name in metrics.DURATIONS},
    )


@hsettings(max_examples=60, deadline=None)
@given(rows=st.lists(_rows(), max_size=30), group_by=st.sampled_from(metrics.GROUP_BY))
def test_aggregate_invariants(rows: list[IncidentMetrics], group_by: str) -> None:
    groups = aggregate(rows=rows, group_by=group_by)
    real = [r for r in rows if r.exercise is None]
    assert sum(g["incidents"] for g in groups) == len(real), "a partition of the real rows"
    assert [g["key"] for g in groups] == sorted(g["key"] for g in groups)
    for g in groups:
        members = [r for r in real if metrics.group_key(r, group_by) == g["key"]]
        for name, s in g["durations"].items():
            values = [getattr(r, name) for r in members if getattr(r, name) is not None]
            assert s["count"] == len(values)
            if values:
                assert min(values) <= s["median"] <= s["p90"] <= s["max"] == max(values)
            else:
                assert s["median"] is s["p90"] is s["max"] is None
        judged = [r.staff_before_public for r in members if r.staff_before_public is not None]
        sbp = g["staff_before_public"]
        assert sbp["judged"] == len(judged) and sbp["held"] == sum(judged)
        assert sbp["share"] is None if not judged else 0 <= sbp["share"] <= 1


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 11)]
    assert metrics.percentile(values, 0.9) == 9.0
    assert metrics.summary(values) == {"count": 10, "median": 5.5, "p90": 9.0, "max": 10.0}
    assert metrics.summary([7.0]) == {"count": 1, "median": 7.0, "p90": 7.0, "max": 7.0}
    with pytest.raises(ValueError, match="group_by"):
        aggregate(rows=[], group_by="year")


def test_week_and_month_are_of_oslo_time() -> None:
    # 23:30 UTC on Sunday 2026-11-29 is Monday 00:30 in Oslo: ISO week 49, not 48
    row = replace(_BASE, opened_at=datetime(2026, 11, 29, 23, 30, tzinfo=UTC))
    assert metrics.group_key(row, "week") == "2026-W49"
    assert (
        metrics.group_key(
            replace(row, opened_at=datetime(2026, 11, 30, 23, 30, tzinfo=UTC)), "month"
        )
        == "2026-12"
    )
