"""Playbooks: YAML action cards per incident type and the engine that applies them.

Imports only ``crisis``. The incident-type vocabulary lives in ``crisis.sources.incident_types``
and which event signals which type in ``crisis.sources.catalogue``, both shared with the stream
correlation and re-exported here.
"""

from crisis.sources.catalogue import INCIDENT_TYPES, incident_type_for
from crisis.sources.incident_types import (
    INCIDENT_TYPE_LABELS,
    REPORT_CATEGORIES,
    SECURITY_POLITICAL_TYPES,
)

__all__ = [
    "INCIDENT_TYPES",
    "INCIDENT_TYPE_LABELS",
    "REPORT_CATEGORIES",
    "SECURITY_POLITICAL_TYPES",
    "incident_type_for",
]
