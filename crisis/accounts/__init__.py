"""Accounts: users, passwords, sessions, API tokens, scopes."""
