"""Playbooks: YAML action cards per incident type and the engine that applies them.

Imports only ``crisis``. The incident-type vocabulary is published here so the stream
correlation names incidents the way the playbooks handle them.
"""

from playbooks.vocabulary import (
    INCIDENT_TYPE_LABELS,
    INCIDENT_TYPES,
    REPORT_CATEGORIES,
    SECURITY_POLITICAL_TYPES,
    incident_type_for,
)

__all__ = [
    "INCIDENT_TYPES",
    "INCIDENT_TYPE_LABELS",
    "REPORT_CATEGORIES",
    "SECURITY_POLITICAL_TYPES",
    "incident_type_for",
]
