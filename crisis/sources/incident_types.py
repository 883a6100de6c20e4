"""The incident-type vocabulary shared by the stream correlation and the playbooks.

It lives in the core so that both name an incident the same way: the correlation opens
incidents with these types and the playbook library handles exactly these types.

One name per kind of incident. The stream worker opens an incident with ``type`` set to one of
:data:`INCIDENT_TYPE_LABELS`; which event signals which type is the event-type catalogue's
(:func:`crisis.sources.catalogue.incident_type_for`).
"""

from __future__ import annotations

from typing import Final

#: incident type → (bokmål, English) label.
INCIDENT_TYPE_LABELS: Final[dict[str, tuple[str, str]]] = {
    "breath_motion_absent": (
        "Pust eller bevegelse mangler (selvmords- eller overdosefare)",
        "Breath or motion absent (suicide or overdose risk)",
    ),
    "self_harm": ("Selvskading eller selvmordsforsøk", "Self-harm or suicide attempt"),
    "escape": ("Rømning eller unnvikelse", "Escape or absconding"),
    "failure_to_return": ("Uteblivelse fra permisjon", "Failure to return from leave"),
    "violence_threat": (
        "Vold eller trusler mot ansatte (personalarm)",
        "Violence or threats against staff (personal alarm)",
    ),
    "hostage": ("Gisseltaking", "Hostage-taking"),
    "fire": ("Brann", "Fire"),
    "infectious_disease": ("Smitteutbrudd", "Outbreak of infectious disease"),
    "infrastructure_outage": (
        "Bortfall av IKT eller kritisk infrastruktur",
        "IT or infrastructure outage",
    ),
    "cyber_attack": ("Dataangrep", "Cyber attack"),
    "extreme_weather": ("Ekstremvær (farevarsel)", "Extreme weather (CAP warning)"),
    "ek_breach": ("Brudd på elektronisk kontroll (EK)", "Electronic-monitoring breach"),
    "reverse_violence_alarm": ("Omvendt voldsalarm", "Reverse violence alarm"),
    "media_storm": ("Mediestorm (kommunikasjonskrise)", "Media storm (communication crisis)"),
    "capacity_closure": (
        "Stenging av kapasitet og evakuering",
        "Closing capacity and evacuation",
    ),
    "security_political": (
        "Sikkerhetspolitisk hendelse (terror, sabotasje, statlig trussel)",
        "Security-political incident (terror, sabotage, state threat)",
    ),
}

#: A staff report's ``category`` (lower-case, bokmål or English) → incident type.
REPORT_CATEGORIES: Final[dict[str, str]] = {
    "selvmord": "breath_motion_absent",
    "overdose": "breath_motion_absent",
    "livløs": "breath_motion_absent",
    "selvskading": "self_harm",
    "selvmordsforsøk": "self_harm",
    "self_harm": "self_harm",
    "rømning": "escape",
    "unnvikelse": "escape",
    "escape": "escape",
    "uteblivelse": "failure_to_return",
    "failure_to_return": "failure_to_return",
    "vold": "violence_threat",
    "trusler": "violence_threat",
    "vold og trusler": "violence_threat",
    "violence": "violence_threat",
    "gisseltaking": "hostage",
    "hostage": "hostage",
    "brann": "fire",
    "fire": "fire",
    "smitte": "infectious_disease",
    "smitteutbrudd": "infectious_disease",
    "infectious_disease": "infectious_disease",
    "ikt": "infrastructure_outage",
    "strømbrudd": "infrastructure_outage",
    "infrastruktur": "infrastructure_outage",
    "infrastructure_outage": "infrastructure_outage",
    "dataangrep": "cyber_attack",
    "cyber_attack": "cyber_attack",
    "ekstremvær": "extreme_weather",
    "uvær": "extreme_weather",
    "extreme_weather": "extreme_weather",
    "ek": "ek_breach",
    "ek-brudd": "ek_breach",
    "omvendt voldsalarm": "reverse_violence_alarm",
    "mediestorm": "media_storm",
    "media_storm": "media_storm",
    "evakuering": "capacity_closure",
    "stenging": "capacity_closure",
    "capacity_closure": "capacity_closure",
    "terror": "security_political",
    "sabotasje": "security_political",
    "sikkerhetspolitisk": "security_political",
    "security_political": "security_political",
}

#: Incident types whose playbook sets ``proximity: false``: the stream worker should open them
#: with ``security_political=True`` so they may go straight to KDI and JD.
SECURITY_POLITICAL_TYPES: Final[frozenset[str]] = frozenset({"security_political"})
