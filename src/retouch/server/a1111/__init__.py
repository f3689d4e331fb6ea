"""A1111-compatible routes, schemas and translation (spec §5)."""
