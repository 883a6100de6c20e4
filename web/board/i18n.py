"""A small message catalogue: Norwegian (bokmål) first, English by ``?lang=en`` or cookie."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

LANGS = ("nb", "en")
DEFAULT = "nb"
COOKIE = "lang"

#: key → (bokmål, English)
CATALOGUE: dict[str, tuple[str, str]] = {
    "app.title": ("Krisestøtte — Kriminalomsorgen", "Crisis support — Correctional Service"),
    "nav.overview": ("Oversikt", "Overview"),
    "nav.report": ("Meld hendelse", "Report incident"),
    "nav.sitreps": ("Situasjonsrapporter", "Situation reports"),
    "nav.logout": ("Logg ut", "Log out"),
    "login.title": ("Logg inn", "Log in"),
    "login.username": ("Brukernavn", "Username"),
    "login.password": ("Passord", "Password"),
    "login.submit": ("Logg inn", "Log in"),
    "exercise": ("ØVELSE", "EXERCISE"),
    "exercise.banner": (
        "ØVELSE — dette er en øvelse, ikke en reell hendelse",
        "EXERCISE — this is an exercise, not a real incident",
    ),
    "exercise.contains": (
        "ØVELSE pågår — hendelser merket ØVELSE er ikke reelle",
        "EXERCISE in progress — incidents marked EXERCISE are not real",
    ),
    # daily roles (likhetsprinsippet: the crisis organisation speaks the daily one)
    "role.leader": ("leder", "leader"),
    "role.deputy": ("stedfortreder", "deputy"),
    "role.on_duty": ("vakthavende", "on-duty officer"),
    "role.safety_representative": ("verneombud", "safety representative"),
    "role.union_representative": ("tillitsvalgt", "union representative"),
    "role.family_liaison": ("pårørendeliaison", "family liaison"),
    "role.media_contact_primary": ("mediekontakt", "media contact"),
    "role.media_contact_alternate": ("mediekontakt (vara)", "media contact (alternate)"),
    "role.communication_staff": ("kommunikasjonsstab", "communication staff"),
    # stakeholder groups of the notifiers
    "group.staff": ("ansatte", "staff"),
    "group.leaders": ("ledere", "leaders"),
    "group.safety": ("verneombud", "safety representatives"),
    "group.unions": ("tillitsvalgte", "unions"),
    "group.inmates": ("innsatte", "inmates"),
    "group.ministry": ("departementet (JD)", "the ministry (JD)"),
    "group.families": ("pårørende", "families"),
    "group.media": ("media", "media"),
    "group.public": ("publikum", "the public"),
    "group.cooperating": ("samvirkeaktører", "cooperating actors"),
    "overview.open": ("Åpne hendelser", "Open incidents"),
    "overview.none": ("Ingen åpne hendelser", "No open incidents"),
    "overview.map": ("Enheter", "Units"),
    "overview.by_level": ("Etter nivå", "By level"),
    "overview.by_severity": ("Etter alvorlighet", "By severity"),
    "col.severity": ("Alvor", "Severity"),
    "col.title": ("Hendelse", "Incident"),
    "col.unit": ("Enhet", "Unit"),
    "col.level": ("Nivå", "Level"),
    "col.opened": ("Opprettet", "Opened"),
    "col.next_update": ("Neste oppdatering", "Next update"),
    "col.status": ("Status", "Status"),
    "col.role": ("Ansvarlig rolle", "Responsible role"),
    "col.deadline": ("Frist", "Deadline"),
    "col.group": ("Gruppe", "Group"),
    "col.actor": ("Aktør", "Actor"),
    "kind.incident_opened": ("Opprettet", "Opened"),
    "kind.source_event": ("Hendelse", "Event"),
    "kind.observation": ("Observasjon", "Observation"),
    "kind.decision": ("Beslutning", "Decision"),
    "kind.task": ("Tiltak", "Task"),
    "kind.task_update": ("Tiltak oppdatert", "Task update"),
    "kind.message": ("Melding", "Message"),
    "kind.escalation": ("Eskalering", "Escalation"),
    "kind.cooperation_contact": ("Samvirke", "Cooperation"),
    "kind.correction": ("Rettelse", "Correction"),
    "kind.status_change": ("Statusendring", "Status change"),
    "kind.situation_report": ("Situasjonsrapport", "Situation report"),
    "delivery.queued": ("i kø", "queued"),
    "delivery.sent": ("sendt", "sent"),
    "delivery.failed": ("feilet", "failed"),
    "delivery.timed_out": ("tidsavbrudd", "timed out"),
    "delivery.held": ("holdt tilbake", "held"),
    "delivery.acknowledged": ("bekreftet", "acknowledged"),
    "delivery.planned": ("planlagt", "planned"),
    "status.open": ("Åpen", "Open"),
    "status.closed": ("Lukket", "Closed"),
    "level.unit": ("Enhet", "Unit"),
    "level.region": ("Region", "Region"),
    "level.kdi": ("KDI", "KDI"),
    "level.jd": ("JD", "Ministry"),
    "incident.accountable": ("Ansvarlig", "Accountable"),
    "incident.log": ("Logg", "Log"),
    "incident.tasks": ("Tiltak (tiltakskort)", "Tasks (action cards)"),
    "incident.decisions": ("Beslutninger", "Decisions"),
    "incident.contacts": ("Samvirke", "Cooperation"),
    "incident.notifications": ("Varsling", "Notifications"),
    "incident.violations": ("Brudd på prinsipper", "Principle violations"),
    "incident.no_violations": ("Ingen registrerte brudd", "No violations recorded"),
    "incident.sitreps": ("Situasjonsrapporter", "Situation reports"),
    "incident.none": ("Ingen", "None"),
    "countdown.label": ("Neste oppdatering", "Next update"),
    "countdown.none": ("Ikke lovet", "Not promised"),
    "countdown.overdue": ("forfalt for", "overdue by"),
    "countdown.in": ("om", "in"),
    "live.connected": ("Direkte", "Live"),
    "live.reconnecting": ("Kobler til igjen …", "Reconnecting …"),
    "form.entry": ("Ny loggføring", "New log entry"),
    "form.decision": ("Beslutning", "Decision"),
    "form.task_update": ("Oppdater tiltak", "Update task"),
    "form.escalate": ("Eskaler", "Escalate"),
    "form.text": ("Tekst", "Text"),
    "form.next_update": ("Neste oppdatering (norsk tid)", "Next update (Oslo time)"),
    "form.inmate_ref": ("Innsatt-referanse (skjermes)", "Inmate reference (masked)"),
    "form.measure": ("Tiltak", "Measure"),
    "form.measure.none": ("Ikke tvangstiltak", "Not a coercive measure"),
    "form.coercive": ("Tvangs- eller begrensende tiltak", "Coercive or restrictive measure"),
    "form.legal_basis": ("Hjemmel", "Legal basis"),
    "form.proportionality": ("Forholdsmessighet", "Proportionality"),
    "form.alternatives": ("Vurderte alternativer", "Alternatives considered"),
    "form.task": ("Tiltak", "Task"),
    "form.status": ("Status", "Status"),
    "form.to": ("Til nivå", "To level"),
    "form.reason": ("Begrunnelse", "Reason"),
    "form.criteria": ("Kriterier som er oppfylt (én per linje)", "Criteria met (one per line)"),
    "form.close": ("Lukk hendelse", "Close incident"),
    "form.final_situation": ("Sluttsituasjon", "Final situation"),
    "form.reopen": ("Gjenåpne", "Reopen"),
    "incident.closed": (
        "Hendelsen er lukket og kan bare leses til den gjenåpnes.",
        "The incident is closed and read-only until it is reopened.",
    ),
    "incident.closed_by": ("Lukket av", "Closed by"),
    "form.submit": ("Lagre", "Save"),
    "form.saved": ("Lagret", "Saved"),
    "form.error": ("Ikke lagret", "Not saved"),
    "task.not_started": ("Ikke startet", "Not started"),
    "task.started": ("Startet", "Started"),
    "task.done": ("Utført", "Done"),
    "sitrep.title": ("Situasjonsrapport", "Situation report"),
    "sitrep.new": ("Nytt utkast fra loggen", "New draft from the log"),
    "sitrep.situation": ("Situasjon", "Situation"),
    "sitrep.actions": ("Iverksatte tiltak", "Actions taken"),
    "sitrep.decisions": ("Beslutninger", "Decisions"),
    "sitrep.needs": ("Behov", "Needs"),
    "sitrep.next_update": ("Neste oppdatering", "Next update"),
    "sitrep.note": ("Kommentar til versjonen", "Comment on this version"),
    "sitrep.save_version": ("Lagre ny versjon", "Save new version"),
    "sitrep.approve": ("Godkjenn for departementet", "Approve for the ministry"),
    "sitrep.status.draft": ("Utkast", "Draft"),
    "sitrep.status.approved": ("Godkjent", "Approved"),
    "sitrep.versions": ("Versjoner", "Versions"),
    "sitrep.approved_by": ("Godkjent av", "Approved by"),
    "sitrep.none": ("Ingen godkjente rapporter", "No approved reports"),
    "sitrep.not_accountable": (
        "Bare ansvarlig rolle kan godkjenne",
        "Only the accountable role can approve",
    ),
    "message.approve": ("Godkjenn utsendelse", "Approve sending"),
    "message.held": ("Holdt tilbake for godkjenning", "Held for approval"),
    "message.no_hook": (
        "Godkjenning av meldinger er ikke tilgjengelig i denne versjonen",
        "Message approval is not available in this build",
    ),
    "report.title": ("Meld en hendelse", "Report an incident"),
    "report.intro": (
        "Alle har ansvar: alle kan melde. Beskriv hva som skjedde, hvor og hvem som er berørt.",
        "Everyone is responsible: anyone may report. Say what happened, where and who is affected.",
    ),
    "report.category": ("Kategori", "Category"),
    "report.place": ("Sted", "Place"),
    "report.what": ("Hva skjedde", "What happened"),
    "report.affected": ("Hvem er berørt", "Who is affected"),
    "report.unit": ("Enhet", "Unit"),
    "report.submit": ("Send melding", "Send report"),
    "ministry.intro": (
        "Godkjente situasjonsrapporter fra Kriminalomsorgen",
        "Approved situation reports from the Correctional Service",
    ),
    # incident history and lessons learned (issue 17: web/board/history.py, lessons.py)
    "nav.history": ("Historikk", "History"),
    "nav.lessons": ("Læringspunkter", "Lessons learned"),
    "history.title": ("Hendelseshistorikk", "Incident history"),
    "history.any": ("Alle", "Any"),
    "history.from": ("Fra", "From"),
    "history.to": ("Til", "To"),
    "history.type": ("Type", "Type"),
    "history.q": ("Søk", "Search"),
    "history.exercises": ("Ta med øvelser", "Include exercises"),
    "history.search": ("Søk", "Search"),
    "history.closed": ("Lukket", "Closed"),
    "history.duration": ("Varighet", "Duration"),
    "history.reason": ("Begrunnelse for lukking", "Closing reason"),
    "history.review": ("Gjennomgang", "Review"),
    "history.prev": ("Forrige", "Previous"),
    "history.next": ("Neste", "Next"),
    "history.none": ("Ingen hendelser passer søket", "No incidents match"),
    "lessons.title": ("Læringspunkter", "Lessons learned"),
    "lessons.all": ("Oppfølgingstiltak", "Follow-up actions"),
    "lessons.findings": ("Funn", "Findings"),
    "lessons.finding": ("Funn", "Finding"),
    "lessons.follow_ups": ("Oppfølgingstiltak", "Follow-up actions"),
    "lessons.action": ("Tiltak", "Action"),
    "lessons.owner": ("Eier", "Owner"),
    "lessons.due": ("Frist", "Due"),
    "lessons.note": ("Merknad", "Note"),
    "lessons.category": ("Kategori", "Category"),
    "lessons.cat.worked_well": ("Fungerte godt", "Worked well"),
    "lessons.cat.improve": ("Forbedres", "To improve"),
    "lessons.change": ("Endre", "Change"),
    "lessons.new_finding": ("Nytt funn", "New finding"),
    "lessons.new_follow_up": ("Nytt oppfølgingstiltak", "New follow-up action"),
    "lessons.no_findings": ("Ingen funn registrert", "No findings recorded"),
    "lessons.no_follow_ups": ("Ingen oppfølgingstiltak", "No follow-up actions"),
    "lessons.overdue": ("Forfalt", "Overdue"),
    "lessons.overdue_only": ("Bare forfalte", "Overdue only"),
    "lessons.overdue_panel": ("Forfalte oppfølgingstiltak", "Overdue follow-up actions"),
    "lessons.st.open": ("Åpen", "Open"),
    "lessons.st.in_progress": ("Pågår", "In progress"),
    "lessons.st.done": ("Utført", "Done"),
    "lessons.st.dropped": ("Avsluttet uten tiltak", "Dropped"),
    "kind.finding": ("Funn", "Finding"),
    "kind.follow_up": ("Oppfølging", "Follow-up"),
    "kind.follow_up_update": ("Oppfølging endret", "Follow-up update"),
}


def pick_lang(request: Request) -> str:
    """``?lang=`` wins (and is remembered in a cookie), then the cookie, then bokmål."""
    for value in (request.query_params.get("lang"), request.cookies.get(COOKIE)):
        if value in LANGS:
            return value
    return DEFAULT


def translator(lang: str) -> Callable[..., str]:
    """``t(key)``; ``t(key, fallback)`` returns the fallback for keys not in the catalogue."""
    index = 1 if lang == "en" else 0

    def t(key: str, fallback: str | None = None) -> str:
        pair = CATALOGUE.get(key)
        if pair:
            return pair[index]
        return key if fallback is None else fallback

    return t


def labels(lang: str, prefix: str) -> dict[str, str]:
    """All entries under ``prefix.`` (e.g. entry kinds) for the page's script."""
    index = 1 if lang == "en" else 0
    return {
        k[len(prefix) + 1 :]: v[index] for k, v in CATALOGUE.items() if k.startswith(prefix + ".")
    }
