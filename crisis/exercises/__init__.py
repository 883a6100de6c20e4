"""Exercises (issue 18): their state, scripted injects, participants and observations."""
