"""A tiny inventory: stock levels."""
