"""Recipients and channels (``CRISIS_NOTIFY_CONFIG``): people, groups, exercises, delivery knobs.

The file is edited by hand, so every problem is reported as ``file:line: field: message``.
Format and a full example: ``notifiers/data/notify.example.yaml``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from crisis.yamlsource import format_field

#: Stakeholder group kinds (DOMAIN.md, "Crisis communication").
GroupKind = Literal[
    "staff",  # ansatte
    "leaders",  # ledere
    "safety",  # verneombud
    "unions",  # tillitsvalgte / fagorganisasjoner
    "inmates",  # innsatte og domfelte, by unit and language
    "ministry",  # JD
    "families",  # pårørende, through the unit's family liaisons
    "media",  # news wire, media contacts
    "public",  # public web page / feed
    "cooperating",  # samvirkeaktører
]
GROUP_KINDS: Final[tuple[str, ...]] = GroupKind.__args__  # type: ignore[attr-defined]

#: Told before the public, at the latest at the same time (ansatte inkl. verneombud/tillitsvalgte).
STAFF_KINDS: Final = frozenset({"staff", "leaders", "safety", "unions"})
#: Held until the incident's staff have been told (every staff message before it settled).
PUBLIC_KINDS: Final = frozenset({"media", "public"})
#: Two-person rule: sent only after a second authorised user approves. Inmates are in it so
#: that they hear only text a person approved for them (no internal task titles).
APPROVAL_KINDS: Final = frozenset({"families", "ministry", "media", "public", "inmates"})

Channel = Literal["sms", "email", "teams", "slack", "matrix", "webhook", "feed", "newswire"]
CHANNELS: Final[tuple[str, ...]] = Channel.__args__  # type: ignore[attr-defined]


class NotifyConfigError(ValueError):
    """A problem in the notify config, pinned to file, line and field."""

    def __init__(self, message: str, *, path: str | Path | None, line: int | None = None) -> None:
        where = str(path) if path is not None else "<notify config>"
        if line is not None:
            where += f":{line}"
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.message = path, line, message


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Contact(_Strict):
    """One way to reach someone; the first contact is the primary, the others alternates."""

    channel: Channel
    url: str = Field(min_length=3, description="apprise URL, e.g. json://host/path, mailto://…")


class Person(_Strict):
    """A recipient: a person, or an endpoint (public feed, news wire, an info screen)."""

    id: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9._-]*$")
    name: str = Field(min_length=1)
    languages: tuple[str, ...] = ("nb",)
    contacts: tuple[Contact, ...] = Field(min_length=1)


class Group(_Strict):
    id: str = Field(min_length=1)
    kind: GroupKind
    unit: str | None = Field(default=None, description="unit id; unset → any incident")
    language: str | None = Field(default=None, description="overrides members' languages")
    members: tuple[str, ...] = Field(min_length=1)
    ack_required: bool = False
    escalation: tuple[str, ...] = Field(
        default=(), description="who is tried next, in order, when an alarm is not acknowledged"
    )


class Delivery(_Strict):
    concurrency: int = Field(default=128, ge=1, le=2000, description="targets in flight")
    attempts_per_contact: int = Field(default=3, ge=1, le=20)
    backoff_seconds: float = Field(default=2.0, ge=0)
    backoff_max_seconds: float = Field(default=300.0, ge=0)
    ack_timeout_seconds: float = Field(default=300.0, gt=0)
    sms_max_segments: int = Field(default=3, ge=1, le=10)
    poll_seconds: float = Field(default=0.5, gt=0)


class NotifyConfig(_Strict):
    version: Literal[1] = 1
    public_base_url: str = "http://127.0.0.1:8000"
    delivery: Delivery = Delivery()
    people: tuple[Person, ...] = ()
    groups: tuple[Group, ...] = ()
    exercises: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="exercise id → ids of its registered participants"
    )
    _people: dict[str, Person] = PrivateAttr(default_factory=dict)
    _participants: dict[str, frozenset[str]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> NotifyConfig:
        ids = [p.id for p in self.people]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate person id(s): {', '.join(dupes)}")
        known = set(ids)
        for gi, group in enumerate(self.groups):
            for field in ("members", "escalation"):
                for mi, member in enumerate(getattr(group, field)):
                    if member not in known:
                        raise _RefError(("groups", gi, field, mi), f"unknown person {member!r}")
        for exercise, members in self.exercises.items():
            for mi, member in enumerate(members):
                if member not in known:
                    raise _RefError(("exercises", exercise, mi), f"unknown person {member!r}")
        return self

    # --- look-ups -----------------------------------------------------------------------

    def model_post_init(self, _context: Any) -> None:
        self._people = {p.id: p for p in self.people}
        self._participants = {k: frozenset(v) for k, v in self.exercises.items()}

    def person(self, person_id: str) -> Person:
        return self._people[person_id]

    def groups_for(self, kind: str, unit: str | None) -> list[Group]:
        """Configured groups of ``kind`` that apply to an incident owned by ``unit``."""
        return [g for g in self.groups if g.kind == kind and (g.unit is None or g.unit == unit)]

    def group(self, group_id: str) -> Group:
        for group in self.groups:
            if group.id == group_id:
                return group
        raise KeyError(group_id)

    def is_participant(
        self,
        exercise: str,
        person_id: str,
        registered: Mapping[str, Collection[str]] | None = None,
    ) -> bool:
        """In this file's ``exercises:`` section, or ``registered`` for the exercise (those
        registered through the API, read from the database by the dispatcher)."""
        if person_id in self._participants.get(exercise, frozenset()):
            return True
        return registered is not None and person_id in registered.get(exercise, ())


class _RefError(ValueError):
    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path


def _line(root: yaml.Node | None, path: Sequence[str | int]) -> int | None:
    """1-based line of ``path`` in the YAML source (or its deepest present ancestor)."""
    node = root
    if node is None:
        return None
    for element in path:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(element):
                    child = value
        elif isinstance(node, yaml.SequenceNode) and isinstance(element, int):
            child = node.value[element] if 0 <= element < len(node.value) else None
        if child is None:
            break
        node = child
    return node.start_mark.line + 1


def _check_urls(config: NotifyConfig, root: yaml.Node | None, path: str | Path | None) -> None:
    """Every contact must be a URL apprise can build a target from (nothing is sent)."""
    import apprise

    from notifiers.channels import register_plugins

    register_plugins()
    for pi, person in enumerate(config.people):
        for ci, contact in enumerate(person.contacts):
            if apprise.Apprise.instantiate(contact.url) is None:
                loc = ("people", pi, "contacts", ci, "url")
                raise NotifyConfigError(
                    f"{format_field(loc)}: not a valid apprise URL: {contact.url!r}",
                    path=path,
                    line=_line(root, loc),
                )


def parse_notify_config(
    text: str, path: str | Path | None = None, *, check_urls: bool = True
) -> NotifyConfig:
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data: Any = loader.construct_document(root) if root is not None else {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise NotifyConfigError(
            f"invalid YAML: {exc.problem or exc.context}",
            path=path,
            line=mark.line + 1 if mark else None,
        ) from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise NotifyConfigError("expected a mapping at the top level", path=path, line=1)
    try:
        config = NotifyConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        ctx_error = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, _RefError):
            loc: tuple[str | int, ...] = ctx_error.path
            message = str(ctx_error)
        else:
            loc = tuple(p for p in err["loc"] if isinstance(p, str | int))
            message = str(err["msg"]).removeprefix("Value error, ")
        more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        field = format_field(loc)
        text_ = f"{field}: {message}{more}" if field else f"{message}{more}"
        raise NotifyConfigError(text_, path=path, line=_line(root, loc)) from None
    if check_urls:
        _check_urls(config, root, path)
    return config


def example_config_path() -> Path:
    return Path(__file__).resolve().parent / "data" / "notify.example.yaml"


def load_notify_config(path: str | Path | None = None) -> NotifyConfig:
    """Load and validate the recipients file (None: the shipped demo example)."""
    source = Path(path) if path is not None else example_config_path()
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise NotifyConfigError(f"cannot read: {exc.strerror or exc}", path=source) from None
    return parse_notify_config(text, source)


@lru_cache(maxsize=1)
def default_config() -> NotifyConfig:
    """The recipients file named by ``CRISIS_NOTIFY_CONFIG`` (else the example), loaded once."""
    from crisis.settings import Settings

    return load_notify_config(Settings().notify_config)
