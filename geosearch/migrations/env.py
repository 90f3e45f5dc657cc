"""Alembic environment: runs on the connection that geosearch.store hands over."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, version_table="alembic_version")
with context.begin_transaction():
    context.run_migrations()
