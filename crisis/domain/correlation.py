"""Correlation rules: which incident an event opens, joins, escalates or closes.

Pure and synchronous: the stream worker feeds events in partition order together with the
correlation state it loaded from the database and gets back *actions* (open an incident,
append an entry). Keeping the rules free of I/O means they are tested on their own, the
worker can apply a whole batch in one transaction, and a test can replay the same events
without Kafka or a database and expect the same incidents.

State is a mapping of string keys to small JSON-able dicts (what the worker stores in the
``correlation_state`` table), plus a view of the incidents those keys refer to. A key that
points at an incident that is no longer open is treated as absent, so an incident closed by
a person is never reopened by a rule.

Windows are measured in *event time* (the envelope's ``time``, else the Kafka timestamp),
so a replay after a crash decides exactly as the first run did. Gateway silence is the one
wall-clock rule (nothing arrives to carry an event time), checked by :meth:`Correlator.due`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from crisis.domain import rules
from crisis.domain.vocabulary import LEVEL_ORDER, OPENING_SEQ, EntryKind, Level, Status
from crisis.sources import catalogue
from crisis.sources.catalogue import EventKind, incident_type_for

# --- configuration and views ------------------------------------------------------------


@dataclass(frozen=True)
class CorrelationConfig:
    """The knobs (``CRISIS_CORRELATION_*`` settings in the worker)."""

    window_seconds: float = 600.0
    storm_window_seconds: float = 60.0
    storm_max_events: int = 20
    heartbeat_factor: float = 3.0
    media_window_seconds: float = 1800.0
    media_threshold: int = 5
    media_key_weight: int = 2  # a negative article in a key outlet counts as this many


@dataclass(frozen=True)
class Event:
    """The fields of a validated envelope the rules look at."""

    source: str
    id: str
    type: str  # short type, e.g. 'sensor.breath_absent'
    unit: str
    time: float  # event time, epoch seconds
    data: Mapping[str, Any]
    exercise: str | None = None
    received: float | None = None  # wall clock of arrival, epoch seconds (heartbeats)


@dataclass
class IncidentView:
    """What the rules need to know about an incident already in the log."""

    id: str
    unit: str
    status: str = Status.OPEN.value
    level: str = Level.UNIT.value
    security_political: bool = False
    exercise: str | None = None

    @property
    def open(self) -> bool:
        return self.status == Status.OPEN.value


@dataclass(frozen=True)
class OpenIncident:
    incident_id: str
    type: str
    title: str
    unit: str
    severity: int
    area: str | None
    exercise: str | None
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    event: tuple[str, str] | None = None  # (source, id) that caused it


@dataclass(frozen=True)
class AddEntry:
    incident_id: str
    kind: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)
    event: tuple[str, str] | None = None
    corrects: int | None = None  # a correction: the seq it corrects


Action = OpenIncident | AddEntry


# --- classification ---------------------------------------------------------------------


#: The fields that name where in a unit an alarm is, most specific first.
AREA_FIELDS = ("cell", "door", "area", "zone", "department", "location", "tag")


def area_of(data: Mapping[str, Any]) -> str:
    for name in AREA_FIELDS:
        value = data.get(name)
        if value:
            return str(value)
    return ""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9æøå]+", "_", text.strip().lower()).strip("_")[:60] or "annet"


def correlation_key(incident_type: str, unit: str, area: str, exercise: str | None) -> str:
    """Alarms with the same key within the window belong to one incident."""
    return f"corr:{incident_type}|{unit}|{area}|{exercise or ''}"


def _cap_identifier(reference: str) -> str:
    """CAP references are 'sender,identifier,sent'; a bare identifier is accepted too."""
    parts = reference.split(",")
    return parts[1].strip() if len(parts) >= 3 else reference.strip()


_AWARENESS = {"yellow": 2, "gul": 2, "orange": 3, "oransje": 3, "red": 4, "rød": 4}
_CAP_SEVERITY = {"Minor": 2, "Moderate": 2, "Severe": 3, "Extreme": 4, "Unknown": 2}


def cap_severity(data: Mapping[str, Any], default: int = 2) -> int:
    """By the awareness level (yellow, orange, red), else the CAP severity, else ``default``."""
    level = str(data.get("awareness_level") or "").lower()
    for word, severity in _AWARENESS.items():
        if word in level:
            return severity
    return _CAP_SEVERITY.get(str(data.get("severity")), default)


def _next_level(level: str) -> str | None:
    try:
        index = LEVEL_ORDER.index(Level(level))
    except ValueError:
        return None
    return LEVEL_ORDER[index + 1].value if index + 1 < len(LEVEL_ORDER) else None


def epoch(value: datetime) -> float:
    return value.timestamp()  # for an aware time, as astimezone(UTC).timestamp()


# --- the correlator ---------------------------------------------------------------------

State = MutableMapping[str, dict[str, Any]]


class Correlator:
    """Turns one event (plus state) into actions; mutates ``state`` and ``incidents``."""

    def __init__(
        self,
        config: CorrelationConfig | None = None,
        *,
        unit_names: Mapping[str, str] | None = None,
        new_id: Callable[[], str],
    ) -> None:
        self.config = config or CorrelationConfig()
        self.unit_names = dict(unit_names or {})
        self.new_id = new_id

    def unit_name(self, unit: str) -> str:
        return self.unit_names.get(unit, unit)

    # -- what to load ----------------------------------------------------------------------

    def state_keys(self, event: Event) -> list[str]:
        """The state rows :meth:`handle` reads or writes for this event."""
        kind = catalogue.find(event.type)
        rule = kind.correlation if kind is not None else None
        if rule == "alarm":
            assert kind is not None
            area = area_of(event.data)
            return [
                correlation_key(kind.incident_type, event.unit, area, event.exercise),
                f"storm:{event.source}",
            ]
        if rule == "report":
            return [self._report_key(event), f"storm:{event.source}"]
        if rule == "heartbeat":
            return [self._gateway_key(event)]
        if rule == "media":
            return self._media_keys(event)
        if rule == "cap":
            ids = [str(event.data.get("identifier", ""))]
            ids += [_cap_identifier(r) for r in event.data.get("references", [])]
            return [self._cap_key(event, i) for i in ids]
        return []

    def _report_key(self, event: Event) -> str:
        category = _slug(str(event.data.get("category", "")))
        return correlation_key(
            f"rapport_{category}", event.unit, str(event.data.get("place", "")), event.exercise
        )

    @staticmethod
    def _gateway_key(event: Event) -> str:
        return f"gw:{event.data.get('gateway')}|{event.exercise or ''}"

    @staticmethod
    def _cap_key(event: Event, identifier: str) -> str:
        return f"cap:{event.unit}|{event.exercise or ''}|{identifier}"

    @staticmethod
    def _media_keys(event: Event) -> list[str]:
        keys = [f"media:inc:{i}" for i in event.data.get("mentions_incidents", [])]
        units = [event.unit, *event.data.get("mentions_units", [])]
        keys += [f"media:unit:{u}|{event.exercise or ''}" for u in dict.fromkeys(units)]
        return keys

    # -- rules -----------------------------------------------------------------------------

    def handle(
        self, event: Event, state: State, incidents: MutableMapping[str, IncidentView]
    ) -> list[Action]:
        """The actions for one event, by its type's correlation rule in the catalogue."""
        kind = catalogue.find(event.type)
        if kind is None:
            return []
        if kind.correlation == "alarm":
            area = area_of(event.data)
            name = self.unit_name(event.unit)
            return self._correlate(
                event,
                state,
                incidents,
                key=correlation_key(kind.incident_type, event.unit, area, event.exercise),
                incident_type=kind.incident_type,
                severity=kind.severity,
                title=kind.title.format(area=area or "hele enheten", unit=name),
                entry_text=kind.entry.format(area=area or "hele enheten"),
                area=area or None,
            )
        if kind.correlation == "report":
            category = str(event.data.get("category", ""))
            place = str(event.data.get("place", ""))
            return self._correlate(
                event,
                state,
                incidents,
                key=self._report_key(event),
                incident_type=incident_type_for(event.type, event.data) or kind.incident_type,
                severity=int(event.data.get("severity") or kind.severity),
                title=kind.title.format(
                    category=category, place=place, unit=self.unit_name(event.unit)
                ),
                entry_text=f"Rapport: {event.data.get('what', '')}"[:2000],
                area=place or None,
                # What the reporter wrote (and whom it names, masked by need-to-know) is in the
                # log from the first entry, not only in the evidence store.
                opening_data={"event_data": dict(event.data)},
            )
        if kind.correlation == "heartbeat":
            return self._heartbeat(event, state, incidents)
        if kind.correlation == "media":
            return self._media(kind, event, state, incidents)
        if kind.correlation == "cap":
            return self._cap(kind, event, state, incidents)
        return []

    @staticmethod
    def _open_incident_of(
        entry: Mapping[str, Any] | None, incidents: Mapping[str, IncidentView]
    ) -> IncidentView | None:
        if not entry or not entry.get("incident"):
            return None
        view = incidents.get(str(entry["incident"]))
        return view if view is not None and view.open else None

    def _source_entry(self, event: Event, incident_id: str, text: str) -> AddEntry:
        return AddEntry(
            incident_id,
            EntryKind.SOURCE_EVENT.value,
            text,
            {
                "source": event.source,
                "id": event.id,
                "type": event.type,
                "event_time": _iso(event.time),
                **dict(event.data),
            },
            event=(event.source, event.id),
        )

    def _open(
        self,
        event: Event,
        incidents: MutableMapping[str, IncidentView],
        *,
        incident_type: str,
        title: str,
        severity: int,
        area: str | None,
        unit: str | None = None,
        text: str = "",
        data: Mapping[str, Any] | None = None,
    ) -> OpenIncident:
        incident_id = self.new_id()
        unit = unit or event.unit
        incidents[incident_id] = IncidentView(incident_id, unit, exercise=event.exercise)
        return OpenIncident(
            incident_id=incident_id,
            type=incident_type,
            title=title[:300],
            unit=unit,
            severity=severity,
            area=area,
            exercise=event.exercise,
            text=text or f"Hendelse opprettet: {title}"[:2000],
            data={
                "source": event.source,
                "id": event.id,
                "event_type": event.type,
                "event_time": _iso(event.time),
                **dict(data or {}),
            },
            event=(event.source, event.id),
        )

    def _storm_step(
        self, event: Event, state: State, incident_id: str | None
    ) -> tuple[bool, list[Action]]:
        """Count the source's events in its window; (suppress this one?, summary actions)."""
        cfg = self.config
        key = f"storm:{event.source}"
        storm = state.get(key) or {"win": event.time, "n": 0, "sup": 0, "announced": False}
        out: list[Action] = []
        if event.time >= storm["win"] + cfg.storm_window_seconds:
            out += self._storm_summary(event.source, storm)
            storm = {
                "win": event.time,
                "n": 0,
                "sup": 0,
                "announced": storm.get("announced", False) and storm.get("sup", 0) > 0,
                "incident": storm.get("incident"),
            }
        storm["n"] += 1
        suppress = incident_id is not None and storm["n"] > cfg.storm_max_events
        if suppress:
            assert incident_id is not None
            storm["sup"] += 1
            storm["incident"] = incident_id
            if not storm.get("announced"):
                storm["announced"] = True
                out.append(
                    AddEntry(
                        incident_id,
                        EntryKind.OBSERVATION.value,
                        f"Sensorstorm: {event.source} har sendt mer enn {cfg.storm_max_events} "
                        f"hendelser på {cfg.storm_window_seconds:g} s; videre hendelser "
                        "undertrykkes og oppsummeres",
                        {"storm": True, "source": event.source, "limit": cfg.storm_max_events},
                    )
                )
        storm["due"] = storm["win"] + cfg.storm_window_seconds if storm["sup"] else None
        state[key] = storm
        return suppress, out

    def _storm_summary(self, source: str, storm: Mapping[str, Any]) -> list[Action]:
        if not storm.get("sup") or not storm.get("incident"):
            return []
        window = self.config.storm_window_seconds
        return [
            AddEntry(
                str(storm["incident"]),
                EntryKind.OBSERVATION.value,
                f"Sensorstorm: {storm['sup']} hendelser fra {source} undertrykt siste {window:g} s",
                {
                    "storm": True,
                    "source": source,
                    "suppressed": storm["sup"],
                    "window_start": _iso(float(storm["win"])),
                    "window_seconds": window,
                },
            )
        ]

    def _correlate(
        self,
        event: Event,
        state: State,
        incidents: MutableMapping[str, IncidentView],
        *,
        key: str,
        incident_type: str,
        severity: int,
        title: str,
        entry_text: str,
        area: str | None,
        opening_data: Mapping[str, Any] | None = None,
    ) -> list[Action]:
        current = state.get(key)
        view = self._open_incident_of(current, incidents)
        if (
            view is not None
            and current is not None
            and event.time - float(current["last"]) > self.config.window_seconds
        ):
            view = None
        suppress, out = self._storm_step(event, state, view.id if view else None)
        if view is None:
            opened = self._open(
                event,
                incidents,
                incident_type=incident_type,
                title=title,
                severity=severity,
                area=area,
                text=f"{title}. Utløst av {event.source}.",
                data=opening_data,
            )
            out.append(opened)
            state[key] = {"incident": opened.incident_id, "last": event.time}
            return out
        state[key] = {"incident": view.id, "last": max(event.time, float(current["last"]))}  # type: ignore[index]
        if not suppress:
            out.append(self._source_entry(event, view.id, entry_text))
        return out

    # -- heartbeats ------------------------------------------------------------------------

    def _heartbeat(
        self, event: Event, state: State, incidents: MutableMapping[str, IncidentView]
    ) -> list[Action]:
        """Remember the gateway's last beat (wall clock of arrival); close a silence incident."""
        key = self._gateway_key(event)
        gateway = str(event.data.get("gateway"))
        interval = float(event.data.get("interval_seconds", 60))
        previous = state.get(key) or {}
        out: list[Action] = []
        view = self._open_incident_of(previous, incidents)
        if view is not None:
            text = f"Gateway {gateway} sender hjerteslag igjen; IKT-bortfallet er over"
            out.append(self._source_entry(event, view.id, text))
            out.append(
                AddEntry(
                    view.id,
                    EntryKind.STATUS_CHANGE.value,
                    f"Lukket: gateway {gateway} er tilbake",
                    {"status": Status.CLOSED.value, "gateway": gateway},
                )
            )
            view.status = Status.CLOSED.value
        arrived = event.received if event.received is not None else event.time
        now = max(arrived, float(previous.get("last", 0.0)))
        state[key] = {
            "gateway": gateway,
            "unit": event.unit,
            "exercise": event.exercise,
            "interval": interval,
            "last": now,
            "incident": None,
            "due": now + self.config.heartbeat_factor * interval,
        }
        return out

    def due(
        self,
        key: str,
        entry: dict[str, Any],
        incidents: MutableMapping[str, IncidentView],
        now: float,
    ) -> list[Action]:
        """Timer check of one state row whose ``due`` time has passed (``now``: wall clock)."""
        if key.startswith("storm:"):
            if entry.get("due") is None or now < float(entry["due"]):
                return []
            out = self._storm_summary(key.removeprefix("storm:"), entry)
            entry.update(win=now, n=0, sup=0, due=None)
            return out
        if key.startswith("cap:"):
            return self._cap_due(entry, incidents, now)
        if not key.startswith("gw:") or entry.get("due") is None or now < float(entry["due"]):
            return []
        if self._open_incident_of(entry, incidents) is not None:
            entry["due"] = None
            return []
        gateway = str(entry["gateway"])
        unit = str(entry["unit"])
        silent = now - float(entry["last"])
        kind = catalogue.HEARTBEAT
        pseudo = Event(
            source=f"/crisis/heartbeat-monitor/{gateway}",
            id=f"silence-{gateway}-{int(entry['last'])}",
            type=kind.name,
            unit=unit,
            time=now,
            data={"gateway": gateway},
            exercise=entry.get("exercise"),
        )
        title = kind.title.format(gateway=gateway, unit=self.unit_name(unit))
        opened = self._open(
            pseudo,
            incidents,
            incident_type=kind.incident_type,
            title=title,
            severity=kind.severity,
            area=gateway,
            text=f"{title}: ingen hjerteslag på {silent:.0f} s "
            f"(forventet hvert {float(entry['interval']):g}. s)",
            data={"gateway": gateway, "silent_seconds": round(silent, 1)},
        )
        entry.update(incident=opened.incident_id, due=None)
        return [opened]

    # -- media -----------------------------------------------------------------------------

    def _media(
        self,
        kind: EventKind,
        event: Event,
        state: State,
        incidents: MutableMapping[str, IncidentView],
    ) -> list[Action]:
        if event.data.get("sentiment") != "negative":
            return []
        cfg = self.config
        out: list[Action] = []
        for key in self._media_keys(event):
            target_unit, related = event.unit, None
            if key.startswith("media:inc:"):
                related = key.removeprefix("media:inc:")
                target = incidents.get(related)
                if target is None or target.exercise != event.exercise:
                    continue  # unknown incident, or exercise and real never mix
                target_unit = target.unit
            elif key.startswith("media:unit:"):
                target_unit = key.removeprefix("media:unit:").rsplit("|", 1)[0]
            entry = state.get(key) or {"times": [], "since": 0}
            # Parallel to the times; state written before weights existed counts one each.
            weights = entry.get("weights") or [1] * len(entry["times"])
            kept = [
                (t, w)
                for t, w in zip(entry["times"], weights, strict=False)
                if t > event.time - cfg.media_window_seconds
            ]
            kept.append((event.time, cfg.media_key_weight if event.data.get("key_media") else 1))
            times = [t for t, _ in kept]
            weight = sum(w for _, w in kept)
            entry["times"], entry["weights"] = times, [w for _, w in kept]
            view = self._open_incident_of(entry, incidents)
            if view is not None:
                out.append(
                    self._source_entry(
                        event, view.id, f"Negativ omtale: {event.data.get('title', '')}"[:2000]
                    )
                )
                entry["since"] = int(entry.get("since", 0)) + kept[-1][1]
                if entry["since"] >= cfg.media_threshold and weight >= cfg.media_threshold:
                    target_level = _next_level(view.level)
                    if target_level is not None and not rules.check_escalation(
                        current=view.level,
                        target=target_level,
                        security_political=view.security_political,
                    ):
                        reason = (
                            f"Mediestormen fortsetter: {len(times)} negative saker siste "
                            f"{cfg.media_window_seconds / 60:g} min"
                        )
                        out.append(
                            AddEntry(
                                view.id,
                                EntryKind.ESCALATION.value,
                                f"Eskalert fra {view.level} til {target_level}: {reason}",
                                {
                                    "from": view.level,
                                    "to": target_level,
                                    "reason": reason,
                                    "criteria": [
                                        f"≥{cfg.media_threshold} negative saker etter forrige nivå"
                                    ],
                                },
                            )
                        )
                        view.level = target_level
                    entry["since"] = 0
            elif weight >= cfg.media_threshold:
                title = kind.title.format(
                    articles=len(times),
                    unit=self.unit_name(target_unit),
                    minutes=cfg.media_window_seconds / 60,
                )
                opened = self._open(
                    event,
                    incidents,
                    incident_type=kind.incident_type,
                    title=title,
                    severity=kind.severity,
                    area=None,
                    unit=target_unit,
                    text=f"{title} (kommunikasjonskrise)",
                    data={"related_incident": related, "articles": len(times), "weight": weight},
                )
                out.append(opened)
                entry.update(incident=opened.incident_id, since=0)
            state[key] = entry
        return out

    # -- CAP warnings ----------------------------------------------------------------------

    def _cap(
        self,
        kind: EventKind,
        event: Event,
        state: State,
        incidents: MutableMapping[str, IncidentView],
    ) -> list[Action]:
        """MET's profile: Alert opens, Update corrects (severity, title, area), an Update with
        responseType AllClear or one that no longer covers the unit (``in_area`` false) ends
        the unit's part, ``expires`` ends it by the clock (:meth:`due`), Cancel closes."""
        data = event.data
        status = data.get("status")
        # Test never opens anything; Exercise only inside an exercise (DOMAIN.md, Hawaii).
        if status in ("Test", "Draft", "System") or (status == "Exercise" and not event.exercise):
            return []
        msg_type = data.get("msg_type")
        identifier = str(data.get("identifier"))
        own_key = self._cap_key(event, identifier)
        ref_keys = [self._cap_key(event, _cap_identifier(r)) for r in data.get("references", [])]
        existing, before = self._open_incident_of(state.get(own_key), incidents), state.get(own_key)
        for key in ref_keys:
            if existing is not None:
                break
            existing = self._open_incident_of(state.get(key), incidents)
            before = state.get(key)
        headline = str(data.get("headline") or data.get("event") or "farevarsel")
        if msg_type not in ("Alert", "Update", "Cancel"):
            return []
        if existing is None:
            if msg_type == "Cancel" or not data.get("in_area", True) or _all_clear(data):
                # Nothing open here: an end never opens an incident (DOMAIN.md: not reopened).
                return []
            return self._cap_open(kind, event, state, incidents, own_key)
        for key in ref_keys:  # the referenced alert's expiry is superseded by this one
            if key in state and key != own_key:
                state[key] = {**state[key], "due": None}
        state[own_key] = {**(before or {}), "incident": existing.id, "due": None}
        if msg_type == "Cancel":
            existing.status = Status.CLOSED.value
            return [
                self._source_entry(event, existing.id, f"Farevarsel opphevet: {headline}"),
                AddEntry(
                    existing.id,
                    EntryKind.STATUS_CHANGE.value,
                    "Lukket: farevarselet er opphevet (CAP Cancel)",
                    {"status": Status.CLOSED.value, "cap_identifier": identifier},
                ),
            ]
        if _all_clear(data) or not data.get("in_area", True):
            why = (
                "faren er over (CAP AllClear)"
                if _all_clear(data)
                else "enheten er ikke lenger i varselområdet (CAP Update)"
            )
            text = f"Farevarsel avsluttet for enheten: {why}: {headline}"
            return [
                self._source_entry(event, existing.id, text[:2000]),
                *self._cap_end(existing, why, identifier),
            ]
        word = "Oppdatert farevarsel" if msg_type == "Update" else "Farevarsel"
        out: list[Action] = [self._source_entry(event, existing.id, f"{word}: {headline}")]
        warning = self._warning_state(kind, event)
        changed = {
            k: v
            for k, v in warning.items()
            if (before or {}).get("warning", {}).get(k) != v and k != "awareness_level"
        }
        if changed:
            text = (
                "Farevarselet er oppdatert (CAP "
                + identifier
                + "): "
                + "; ".join(_CHANGE_LABELS[k] + f" {v}" for k, v in changed.items())
            )
            out.append(
                AddEntry(
                    existing.id,
                    EntryKind.CORRECTION.value,
                    text[:2000],
                    {
                        **changed,
                        "awareness_level": warning.get("awareness_level"),
                        "reason": f"CAP {msg_type} {identifier}",
                        "cap_identifier": identifier,
                        "previous": {k: (before or {}).get("warning", {}).get(k) for k in changed},
                    },
                    corrects=OPENING_SEQ,
                )
            )
        state[own_key] = {
            "incident": existing.id,
            "warning": warning,
            "due": _expiry(data),
            "identifier": identifier,
        }
        return out

    def _warning_state(self, kind: EventKind, event: Event) -> dict[str, Any]:
        """What of the incident the warning sets: severity, title, area (and the level)."""
        data = event.data
        headline = str(data.get("headline") or data.get("event") or "farevarsel")
        return {
            "severity": cap_severity(data, kind.severity),
            "title": kind.title.format(headline=headline, unit=self.unit_name(event.unit))[:300],
            "area": str(data.get("area_desc") or "")[:120] or None,
            "awareness_level": data.get("awareness_level"),
        }

    def _cap_open(
        self,
        kind: EventKind,
        event: Event,
        state: State,
        incidents: MutableMapping[str, IncidentView],
        own_key: str,
    ) -> list[Action]:
        warning = self._warning_state(kind, event)
        identifier = str(event.data.get("identifier"))
        opened = self._open(
            event,
            incidents,
            incident_type=kind.incident_type,
            title=warning["title"],
            severity=warning["severity"],
            area=warning["area"],
            text=f"{warning['title']}. {event.data.get('description') or ''}".strip()[:2000],
            data={"cap_identifier": identifier, "cap_sender": event.data.get("sender")},
        )
        state[own_key] = {
            "incident": opened.incident_id,
            "warning": warning,
            "due": _expiry(event.data),
            "identifier": identifier,
        }
        return [opened]

    @staticmethod
    def _cap_end(view: IncidentView, why: str, identifier: str) -> list[Action]:
        """The warning's part is over: close an incident still at the unit; one escalated
        above it (or security-political) stays open for its owner, with a logged note."""
        if view.level == Level.UNIT.value and not view.security_political:
            view.status = Status.CLOSED.value
            return [
                AddEntry(
                    view.id,
                    EntryKind.STATUS_CHANGE.value,
                    f"Lukket: {why}",
                    {
                        "status": Status.CLOSED.value,
                        "reason": why,
                        "final_situation": "Farevarselet er over for enheten",
                        "cap_identifier": identifier,
                    },
                )
            ]
        return [
            AddEntry(
                view.id,
                EntryKind.OBSERVATION.value,
                f"Farevarselet er over ({why}), men hendelsen er på nivå {view.level}"
                f"{' og sikkerhetspolitisk' if view.security_political else ''}: "
                "den lukkes ikke automatisk; eier avgjør",
                {"warning_ended": True, "reason": why, "cap_identifier": identifier},
            )
        ]

    def _cap_due(
        self, entry: dict[str, Any], incidents: MutableMapping[str, IncidentView], now: float
    ) -> list[Action]:
        """``expires`` has passed and no later message superseded this one."""
        if entry.get("due") is None or now < float(entry["due"]):
            return []
        expired = _iso(float(entry["due"]))
        entry["due"] = None
        view = self._open_incident_of(entry, incidents)
        if view is None:
            return []
        why = f"farevarselet utløp {expired} (CAP expires) uten ny melding"
        return self._cap_end(view, why, str(entry.get("identifier") or ""))


_CHANGE_LABELS = {"severity": "alvorlighetsgrad", "title": "tittel", "area": "område"}


def _all_clear(data: Mapping[str, Any]) -> bool:
    return "AllClear" in (data.get("response_types") or [])


def _expiry(data: Mapping[str, Any]) -> float | None:
    """The warning's ``expires`` as epoch seconds (the clock's due time), if it has one."""
    value = data.get("expires")
    if not value:
        return None
    try:
        when = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when.timestamp() if when.tzinfo is not None else None


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
