"""Jinja2 message templates (``NAME.LANG.j2``) and their approval catalogue."""
