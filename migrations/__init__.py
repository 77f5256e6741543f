"""Alembic environment and versions: the only place that changes the schema."""
