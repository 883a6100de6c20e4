"""Post-incident review: history, metrics, replay, reports and lessons learned."""
