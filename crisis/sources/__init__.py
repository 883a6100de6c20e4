"""What comes in: the event envelope, CAP, input limits, per-source rate limits, dead letters."""
