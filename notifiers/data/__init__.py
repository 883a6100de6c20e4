"""Shipped data: the documented example recipients file."""
