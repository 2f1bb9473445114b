"""A tiny journal: entries with a title and a body."""
