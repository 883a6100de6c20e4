"""Need-to-know: personal references masked in every output, and every unmasked read audited.

Entries and events carry references to persons in named fields (:data:`PERSONAL_FIELDS`), at
any depth: an entry's data may hold the source event (``data["event"]["data"]``,
``event_data``) and a dead letter the raw event. Roles that handle the person (:data:`NEED`:
admins, the unit's operators, the region, KDI) see them; communication staff, the ministry and
exercise controllers see :data:`MASK`. Each read that shows references unmasked writes one
``data_access`` row — who, which incident, entries and references, the channel, when, and the
role's stated need — in a table of its own, so reading never changes the log being read.
Free text (``text``, titles, ``what``/``affected`` of a report) is not scanned: staff are
trained to put identities in the reference fields.

Operational data (:func:`has_operational_duty`): dead letters, and who a message went to
(:data:`RECIPIENT_FIELDS` of a delivery receipt, the names in its text, the recipient of each
message of an update), are for the same roles, within their units; the others see neither.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.clock import as_utc
from crisis.domain.vocabulary import EntryKind, Person, Role
from crisis.log.models import DataAccess, LogEntry
from crisis.sources.models import DeadLetter

MASK: Final = "••• (skjermet)"

#: Every field that names a person, singular and list form. Masked at any depth of an entry's
#: or event's data; the event types use ``client_ref`` (EK) and ``protected_person_ref``
#: (reverse violence alarm), staff write ``inmate_ref`` on the board; the rest are reserved.
PERSONAL_FIELDS: Final[tuple[str, ...]] = (
    "inmate_ref",  # innsatt (the board's entry form)
    "inmate_refs",
    "client_ref",  # domfelt i friomsorgen / under elektronisk kontroll (ek_* events)
    "client_refs",
    "protected_person_ref",  # den voldsalarmen beskytter (reverse_violence_alarm)
    "protected_person_refs",
    "banned_person_ref",  # den som har kontaktforbud
    "banned_person_refs",
    "victim_ref",  # fornærmede
    "victim_refs",
    "offender_ref",  # gjerningsperson
    "offender_refs",
    "next_of_kin_ref",  # pårørende
    "next_of_kin_refs",
    "person_ref",  # any other person
    "person_refs",
    "staff_ref",  # a named employee (injured, threatened, involved)
    "staff_refs",
    "staff_id",  # whose personal alarm went off (sensor.personal_alarm)
)
_PERSONAL: Final = frozenset(PERSONAL_FIELDS)

#: Why each role with a need to know sees the persons: stored with every unmasked read.
NEED: Final[Mapping[str, str]] = {
    Role.ADMIN: "systemforvaltning og tilgangskontroll / system administration and access control",
    Role.OPERATOR: "driftsansvar for enheten / operational responsibility for the unit",
    Role.REGION: "regionalt ansvar for enhetene / regional responsibility for its units",
    Role.KDI: "nasjonal ledelse og oppfølging / national command and oversight",
}

#: Roles with a need to know who the persons are; every other role sees the mask.
NEED_TO_KNOW: Final = frozenset(NEED)


def sees_identities(user: Person) -> bool:
    return user.role in NEED_TO_KNOW


# --- operational data: dead letters and who was notified ----------------------------------

#: Fields of a delivery receipt (a ``message`` entry of the notifiers) that name who was
#: notified: a person or an endpoint of the recipients file.
RECIPIENT_FIELDS: Final[tuple[str, ...]] = (
    "recipient",
    "escalated_to",
    "escalated_from",
    "acknowledged_by",
)


def has_operational_duty(user: Person) -> bool:
    """The one rule for operational data: dead letters and recipient lists are read by the
    roles with operational duty (those of :data:`NEED`), each within its scope of units.
    Communication staff, the ministry and exercise controllers read no dead letters and see
    each message without who it went to."""
    return user.role in NEED_TO_KNOW


def _recipient_names(record: Mapping[str, Any]) -> list[str]:
    names = {str(record[f]) for f in RECIPIENT_FIELDS if record.get(f) not in (None, "")}
    for name in list(names):
        names.add(name.partition(":")[2] or name)  # acknowledged_by: "recipient:<id>"
    return sorted(names, key=len, reverse=True)


def _scrub(text: str, names: Sequence[str]) -> str:
    for name in names:
        text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", MASK, text)
    return text


def without_recipients(record: Mapping[str, Any], text: str = "") -> tuple[dict[str, Any], str]:
    """(``record`` with its recipient fields masked and the names they held masked in its
    other strings, ``text`` likewise): a receipt's data and text, or a message of an update."""
    names = _recipient_names(record)
    if not names:
        return dict(record), text
    out = {
        key: MASK
        if key in RECIPIENT_FIELDS and value not in (None, "")
        else _scrub(value, names)
        if isinstance(value, str)
        else value
        for key, value in record.items()
    }
    return out, _scrub(text, names)


class Shown(NamedTuple):
    """An entry as one reader may see it: its text and data masked as need be."""

    entry: LogEntry
    text: str
    data: dict[str, Any]


def entry_for_viewer(user: Person, entry: LogEntry) -> tuple[Shown, list[str]]:
    """The entry as this user may see it (personal references and, in a delivery receipt,
    recipients masked by need-to-know) and the references shown unmasked."""
    data, refs = for_viewer(user, entry.data)
    text = entry.text
    if entry.kind == EntryKind.MESSAGE and not has_operational_duty(user):
        data, text = without_recipients(data, text)
    return Shown(entry, text, data), refs


def _leaves(value: Any) -> list[str]:
    if isinstance(value, Mapping):
        return [leaf for v in value.values() for leaf in _leaves(v)]
    if isinstance(value, list | tuple):
        return [leaf for v in value for leaf in _leaves(v)]
    return [str(value)] if value not in (None, "") else []


def refs_in(data: Any) -> list[str]:
    """Every personal reference in ``data``, at any depth, in order of appearance."""
    if isinstance(data, Mapping):
        out: list[str] = []
        for key, value in data.items():
            out += _leaves(value) if key in _PERSONAL else refs_in(value)
        return out
    if isinstance(data, list | tuple):
        return [ref for item in data for ref in refs_in(item)]
    return []


def personal_items(data: Any) -> list[tuple[str, str]]:
    """(field, value) of every personal reference in ``data`` as it stands (masked or not),
    at any depth: what a page shows next to an entry."""
    if isinstance(data, Mapping):
        out: list[tuple[str, str]] = []
        for key, value in data.items():
            if key in _PERSONAL:
                out += [(key, leaf) for leaf in _leaves(value)]
            else:
                out += personal_items(value)
        return out
    if isinstance(data, list | tuple):
        return [pair for item in data for pair in personal_items(item)]
    return []


def _masked(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (
                ([MASK] if isinstance(v, list | tuple) else MASK)
                if k in _PERSONAL and _leaves(v)
                else _masked(v)
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_masked(v) for v in value]
    return value


def masked(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``data`` with every personal reference, at any depth, replaced by the mask."""
    return dict(_masked(dict(data or {})))


def for_viewer(user: Person, data: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """(data as this user may see it, the references shown unmasked — to be recorded)."""
    if sees_identities(user):
        return dict(data or {}), refs_in(data)
    return masked(data), []


def raw_for_viewer(user: Person, raw: str) -> tuple[str, list[str]]:
    """A raw event (text, JSON if readable) as this user may see it, and the refs shown.

    Text that is not JSON cannot be masked field by field: if it names a personal field at
    all, a reader without need-to-know gets the mask instead, and a reader with it is recorded.
    """
    try:
        parsed = json.loads(raw)
    except ValueError:
        named = [f"{field} (uparset / unparsed)" for field in PERSONAL_FIELDS if field in raw]
        if not named:
            return raw, []
        return (raw, named) if sees_identities(user) else (MASK, [])
    refs = refs_in(parsed)
    if not refs:
        return raw, []
    if sees_identities(user):
        return raw, refs
    return json.dumps(_masked(parsed), ensure_ascii=False), []


def entry_readable(user: Person, entry: LogEntry) -> bool:
    """Whether an entry is for this user at all: the ministry reads no sitrep versions (drafts)."""
    if user.role != Role.MINISTRY or entry.kind != EntryKind.SITUATION_REPORT:
        return True
    return entry.data.get("action") == "approved"


async def record_access(
    session: AsyncSession,
    *,
    user: Person,
    incident_id: str,
    entry_ids: Iterable[int],
    refs: Iterable[str],
    channel: str,
) -> DataAccess | None:
    """Record one unmasked read (flushes; the caller commits). Nothing shown → nothing kept."""
    ref_list = sorted(set(refs))
    if not ref_list:
        return None
    row = DataAccess(
        actor=f"user:{user.name}",
        role=user.role,
        incident_id=incident_id,
        entry_ids=sorted(set(entry_ids)),
        inmate_refs=ref_list,
        channel=channel,
        need=NEED.get(user.role, ""),
    )
    session.add(row)
    await session.flush()
    return row


async def read_entries(
    session: AsyncSession,
    *,
    user: Person,
    incident_id: str,
    entries: Iterable[LogEntry],
    channel: str,
) -> list[Shown]:
    """The entries the user may read, as :func:`entry_for_viewer` shows them; one
    ``data_access`` row when any reference was shown unmasked (flushes; the caller commits)."""
    out: list[Shown] = []
    ids: list[int] = []
    refs: list[str] = []
    for entry in entries:
        if not entry_readable(user, entry):
            continue
        item, shown = entry_for_viewer(user, entry)
        if shown:
            ids.append(entry.id or 0)
            refs += shown
        out.append(item)
    await record_access(
        session, user=user, incident_id=incident_id, entry_ids=ids, refs=refs, channel=channel
    )
    return out


async def read_dead_letters(
    session: AsyncSession, *, user: Person, letters: Sequence[DeadLetter]
) -> list[dict[str, Any]]:
    """Dead letters as this user may see them (``raw`` masked); unmasked ones are recorded with
    ``incident_id`` "" (they belong to no incident) and their ids as ``entry_ids``."""
    out: list[dict[str, Any]] = []
    ids: list[int] = []
    refs: list[str] = []
    for letter in letters:
        raw, shown = raw_for_viewer(user, letter.raw)
        if shown:
            ids.append(letter.id or 0)
            refs += shown
        out.append({**letter.model_dump(), "raw": raw})
    await record_access(session, user=user, incident_id="", entry_ids=ids, refs=refs, channel="dlq")
    return out


def actor_name(actor: str) -> str:
    """``kari`` and ``user:kari`` name the same actor."""
    return actor if ":" in actor else f"user:{actor}"


async def accesses(
    session: AsyncSession,
    *,
    actor: str | None = None,
    incident_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: int | None = None,
    limit: int = 100,
) -> list[DataAccess]:
    """The access audit, newest first; ``before`` an id to page backwards from; ``since``
    inclusive, ``until`` exclusive (naive times are UTC)."""
    stmt = select(DataAccess).order_by(col(DataAccess.id).desc()).limit(limit)
    if actor:
        stmt = stmt.where(DataAccess.actor == actor_name(actor))
    if incident_id is not None:
        stmt = stmt.where(DataAccess.incident_id == incident_id)
    if since is not None:
        stmt = stmt.where(col(DataAccess.at) >= as_utc(since))
    if until is not None:
        stmt = stmt.where(col(DataAccess.at) < as_utc(until))
    if before is not None:
        stmt = stmt.where(col(DataAccess.id) < before)
    return list((await session.exec(stmt)).all())
