"""The seq of each space's last write, so that a walk by distance meets a space once.

``spaces.changed_seq`` is the change feed's seq of the write that last changed the space
(0 as a load leaves it). A page by distance is read with the feed's seq of its snapshot;
the cursor carries it, and the next pages skip every space changed after it: a space that
moved during the walk (from before the cursor to after it) is not met twice.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    """Add the column."""
    op.add_column("spaces", sa.Column("changed_seq", sa.BigInteger, nullable=False,
                                      server_default="0"))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("spaces", "changed_seq")
