"""Kafka: topic names, the embedded broker, the producer and its outbox."""
