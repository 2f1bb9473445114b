"""A tiny weather toolkit: unit conversions."""
