"""What `crisis up` runs: the process supervisor and its heartbeats."""
