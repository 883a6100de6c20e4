"""Pure rules of the domain: organisation, correlation, incident types, privacy, permissions."""
