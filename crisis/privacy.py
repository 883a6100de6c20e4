"""Inmates' identities: need-to-know masking, and a record of every unmasked view.

Entries and events may carry ``inmate_ref`` (one reference) or ``inmate_refs`` (a list) in
their data. Roles that handle the person — the unit's operators, the region, KDI, admins —
see them; everyone else (communication staff, the ministry, exercise controllers) sees a
mask. Each time references are shown unmasked, one ``data_access`` row records who, which
incident, which entries and which references, and through which channel. Free text is not
scanned: staff are trained to put identities in the reference field, not in the text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from crisis.board_models import DataAccess
from crisis.models import Role, User

IDENTITY_KEYS = ("inmate_ref", "inmate_refs")
MASK = "••• (skjermet)"

#: Roles with a need to know who the inmate is.
NEED_TO_KNOW = frozenset({Role.ADMIN, Role.OPERATOR, Role.REGION, Role.KDI})


def sees_identities(user: User) -> bool:
    return user.role in NEED_TO_KNOW


def refs_in(data: Mapping[str, Any] | None) -> list[str]:
    if not data:
        return []
    out: list[str] = []
    for key in IDENTITY_KEYS:
        value = data.get(key)
        if isinstance(value, list | tuple):
            out += [str(v) for v in value if v]
        elif value:
            out.append(str(value))
    return out


def masked(data: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``data`` with every identity replaced by the mask."""
    out = dict(data or {})
    for key in IDENTITY_KEYS:
        if out.get(key):
            out[key] = [MASK] if isinstance(out[key], list | tuple) else MASK
    return out


def for_viewer(user: User, data: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """(data as this user may see it, the references shown unmasked — to be recorded)."""
    if sees_identities(user):
        return dict(data or {}), refs_in(data)
    return masked(data), []


async def record_access(
    session: AsyncSession,
    *,
    user: User,
    incident_id: str,
    entry_ids: Iterable[int],
    refs: Iterable[str],
    channel: str,
) -> DataAccess | None:
    """Record one unmasked view (flushes; the caller commits). Nothing shown → nothing kept."""
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
    )
    session.add(row)
    await session.flush()
    return row
