"""Pydantic schemas of the API: the domain as plain data."""
