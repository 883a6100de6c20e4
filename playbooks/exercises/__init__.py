"""Drills and exercises: scenario files (the shipped ones live here too), runner, evaluation."""
