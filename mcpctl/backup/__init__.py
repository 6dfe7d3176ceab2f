"""Backups: every resource as documents in one JSON file, and their analysis."""
