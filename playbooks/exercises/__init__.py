"""Exercises: scenario files, their runner and their evaluation (issue 18)."""
