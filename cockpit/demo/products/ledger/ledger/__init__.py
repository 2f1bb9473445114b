"""A tiny ledger: invoice lines and totals."""
