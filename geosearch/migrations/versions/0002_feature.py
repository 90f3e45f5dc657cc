"""Each space's feature JSON (everything but distance_m), written once at load.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSON

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    """Add the column; loads fill it (geosearch.features)."""
    op.add_column("spaces", sa.Column("feature", JSON))


def downgrade() -> None:
    """Drop the column."""
    op.drop_column("spaces", "feature")
