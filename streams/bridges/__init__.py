"""Bridges: outside sources (MQTT sensors, media monitoring) → validated events on Kafka.

Each bridge is its own process (``crisis bridge mqtt|media``) with its own durable outbox in
the data dir, so a Kafka outage loses nothing and one bridge's backlog never reorders another's.
"""
