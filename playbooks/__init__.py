"""Playbooks: YAML action cards per incident type and the engine that applies them.

Imports only ``crisis``. The incident-type vocabulary lives in ``crisis.incident_types``, shared
with the stream correlation, and is re-exported here.
"""

from crisis.sources.incident_types import (
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
