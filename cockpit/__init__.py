"""Cockpit: one person runs a factory of AI agents across several products."""

__version__ = "0.1.0"
