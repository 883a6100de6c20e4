"""The Kafka topics of the contract; every package names them from here."""

EVENTS = "crisis.events"
EVENTS_DLQ = "crisis.events.dlq"
LOG = "crisis.log"
NOTIFICATIONS = "crisis.notifications"
