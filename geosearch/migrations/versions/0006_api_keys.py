"""API keys: who may write spaces and read the change feed (geosearch.keys).

A key is named (the name is the actor its changes are recorded under, so it is never
reused, even once the key is revoked) and found by ``prefix``, the public part of its
secret; the secret itself is kept only as its SHA-256 digest. ``scopes`` are among
``write``, ``changes`` and ``admin``. A revoked key keeps its row with ``revoked_at``
set; ``last_used_at`` is refreshed at most once per key cache period per server process.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY

revision = "0006"
down_revision = "0005"
_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the table (the prefix's unique constraint is its lookup index)."""
    op.create_table(
        "api_keys",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("prefix", sa.Text, nullable=False, unique=True),
        sa.Column("secret_sha256", sa.LargeBinary, nullable=False),
        sa.Column("scopes", ARRAY(sa.Text), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False, server_default=sa.func.now()),
        sa.Column("revoked_at", _WHEN),
        sa.Column("last_used_at", _WHEN),
        sa.CheckConstraint("octet_length(secret_sha256) = 32", name="api_keys_digest"),
        sa.CheckConstraint("cardinality(scopes) > 0 AND "
                           "scopes <@ ARRAY['write', 'changes', 'admin']", name="api_keys_scopes"),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("api_keys")
