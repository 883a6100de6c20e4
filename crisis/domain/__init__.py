"""Pure rules of the domain: vocabulary, organisation, correlation, rules, permissions."""
