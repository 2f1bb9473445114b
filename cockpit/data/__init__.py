"""Data files shipped with cockpit (price table)."""
