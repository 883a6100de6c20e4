"""The review timeline: an incident's entries as rows, filtered, deliveries folded per update.

Pure functions over entries in seq order, either ``LogEntry`` rows or entries as a viewer may
read them (``privacy.Shown``): a row shows the text and data it is given, so masking stays
the caller's (the review page, the report export). An update is one message to many
recipients; its delivery receipts become one row with the count per status and the latest
attempt per recipient (expandable), placed where its first receipt stands.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from crisis.domain.rules import NOTIFIER_ACTOR
from crisis.domain.vocabulary import EntryKind
from crisis.log.models import LogEntry
from crisis.log.privacy import Shown, personal_items

#: The entry kind of a folded update row (a ``message`` entry kind in the log).
UPDATE_KIND = EntryKind.MESSAGE.value


@dataclass
class Delivery:
    """The latest attempt to one recipient of an update, as the viewer may see it."""

    group: str
    recipient: str
    status: str
    channel: str
    error: str
    at: datetime
    seq: int


@dataclass
class Row:
    """One line of the review timeline: an entry, or an update with its receipts."""

    kind: str
    at: datetime
    actor: str
    text: str
    seq: int
    entry_id: int | None
    data: dict[str, Any]
    units: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    update_id: str | None = None
    deliveries: list[Delivery] = field(default_factory=list)
    last_seq: int = 0
    receipts: int = 0

    @property
    def folded(self) -> bool:
        return self.update_id is not None

    @property
    def counts(self) -> dict[str, int]:
        """Recipients per latest delivery status (a folded update), else empty."""
        out: dict[str, int] = {}
        for d in self.deliveries:
            out[d.status] = out.get(d.status, 0) + 1
        return dict(sorted(out.items()))

    @property
    def refs(self) -> list[tuple[str, str]]:
        return personal_items(self.data)


@dataclass(frozen=True)
class Options:
    """What the filter form offers: the values that occur in the incident's log."""

    kinds: tuple[str, ...]
    actors: tuple[str, ...]
    groups: tuple[str, ...]
    units: tuple[str, ...]


def _parts(item: LogEntry | Shown) -> tuple[LogEntry, str, dict[str, Any]]:
    if isinstance(item, Shown):
        return item.entry, item.text, item.data
    return item, item.text, dict(item.data or {})


def is_receipt(entry: LogEntry) -> bool:
    """A delivery receipt of the notifiers (what ``projection.notifications`` reads)."""
    return (
        entry.kind == EntryKind.MESSAGE
        and entry.actor == NOTIFIER_ACTOR
        and "status" in (entry.data or {})
    )


def _units(data: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for key in ("unit", "subject", "new_owner"):
        if isinstance(data.get(key), str) and data[key]:
            found.append(data[key])
    event = data.get("event")
    if isinstance(event, Mapping):
        found += list(_units(event))
    source = data.get("source")
    if isinstance(source, str) and source.startswith("/units/"):
        found.append(source.split("/")[2])
    return tuple(dict.fromkeys(u for u in found if u))


def _groups(data: Mapping[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    if isinstance(data.get("group"), str) and data["group"]:
        found.append(data["group"])
    for step in data.get("plan") or []:  # a notification plan names its groups
        if isinstance(step, Mapping) and isinstance(step.get("group"), str):
            found.append(step["group"])
    return tuple(dict.fromkeys(found))


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def fold(entries: Iterable[LogEntry | Shown]) -> list[Row]:
    """Every entry as a row, the receipts of one update folded into one row."""
    out: list[Row] = []
    updates: dict[str, Row] = {}
    # where each recipient's latest attempt stands in its update's row; never shown
    places: dict[tuple[str, str, str], int] = {}
    for item in entries:
        entry, text, data = _parts(item)
        raw = entry.data or {}
        update_id = _str(raw.get("update_id")) if is_receipt(entry) else ""
        if not update_id:
            out.append(
                Row(
                    kind=entry.kind,
                    at=entry.at,
                    actor=entry.actor,
                    text=text,
                    seq=entry.seq,
                    entry_id=entry.id,
                    data=data,
                    units=_units(raw),
                    groups=_groups(raw),
                    last_seq=entry.seq,
                )
            )
            continue
        row = updates.get(update_id)
        if row is None:
            row = updates[update_id] = Row(
                kind=UPDATE_KIND,
                at=entry.at,
                actor=entry.actor,
                text=text,
                seq=entry.seq,
                entry_id=entry.id,
                data={},
                update_id=update_id,
            )
            out.append(row)
        group = _str(raw.get("group")) or "-"
        # Keyed by the stored recipient: a masked one still counts once per person.
        who = _str(raw.get("recipient")) or _str(raw.get("message_id")) or f"#{entry.seq}"
        delivery = Delivery(
            group=group,
            recipient=_str(data.get("recipient")),
            status=_str(data.get("status")),
            channel=_str(data.get("channel")),
            error=_str(data.get("error")),
            at=entry.at,
            seq=entry.seq,
        )
        place = places.setdefault((update_id, group, who), len(row.deliveries))
        if place == len(row.deliveries):
            row.deliveries.append(delivery)
        else:
            row.deliveries[place] = delivery
        if group not in row.groups:
            row.groups = (*row.groups, group)
        row.last_seq, row.receipts = entry.seq, row.receipts + 1
    return out


def rows(
    *,
    entries: Sequence[LogEntry | Shown],
    kinds: Iterable[str] | None = None,
    actor: str | None = None,
    group: str | None = None,
    unit: str | None = None,
    source_events: bool = True,
) -> list[Row]:
    """The timeline's rows, in log order, narrowed by the filters given (None: any).

    ``kinds`` keeps rows of those entry kinds (a folded update is a ``message``); ``actor``
    the rows of that actor; ``group`` the rows naming that notification group (updates and
    notification plans); ``unit`` the rows naming that unit; ``source_events=False`` hides
    the source events.
    """
    wanted = set(kinds) if kinds else None
    out: list[Row] = []
    for row in fold(entries):
        if wanted is not None and row.kind not in wanted:
            continue
        if not source_events and row.kind == EntryKind.SOURCE_EVENT:
            continue
        if actor and row.actor != actor:
            continue
        if group and group not in row.groups:
            continue
        if unit and unit not in row.units:
            continue
        out.append(row)
    return out


def options(*, entries: Sequence[LogEntry | Shown]) -> Options:
    """The filter form's choices, from the values in this log (kinds in vocabulary order)."""
    folded = fold(entries)
    order = {k.value: i for i, k in enumerate(EntryKind)}
    return Options(
        kinds=tuple(sorted({r.kind for r in folded}, key=lambda k: (order.get(k, 99), k))),
        actors=tuple(sorted({r.actor for r in folded})),
        groups=tuple(sorted({g for r in folded for g in r.groups})),
        units=tuple(sorted({u for r in folded for u in r.units})),
    )
