"""Live writes: each space's revision and time of its last write, and the change feed.

``spaces.revision`` is 1 when a load writes a space and goes up by one with each write
through the API (its ``ETag``); ``spaces.updated_at`` is when it was last written. The
defaults are what a load leaves: it COPYs the other columns (geosearch.layout).
``changes`` is the feed of every committed change, the audit trail: ``seq`` numbers the
entries without a gap in commit order, taken from the one row of ``change_counter`` in the
same transaction as the change (its row lock orders the writers, so that no reader sees a
seq before every smaller one is committed). ``search_words.tile`` is indexed: a write
gives a new word the next tile.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0007"
down_revision = "0006"
OPS = ("create", "replace", "update", "close", "dataset")


def upgrade() -> None:
    """Add the columns, the feed, its counter and the index of tiles."""
    op.add_column("spaces", sa.Column("revision", sa.BigInteger, nullable=False,
                                      server_default="1"))
    op.add_column("spaces", sa.Column("updated_at", sa.DateTime(timezone=True),
                                      nullable=False, server_default=sa.text("now()")))
    op.create_index("search_words_tile", "search_words", ["tile"])
    op.create_table(
        "changes",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("op", sa.Text, nullable=False),
        sa.Column("id", sa.Text),  # none for a dataset entry
        sa.Column("revision", sa.BigInteger),
        sa.Column("previous_revision", sa.BigInteger),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False,
                  server_default=sa.text("now()")),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("dataset_version", sa.Text, nullable=False),
        sa.Column("space", JSONB),
        sa.CheckConstraint(f"op IN ({', '.join(repr(o) for o in OPS)})", name="changes_op"),
    )
    op.create_table(
        "change_counter",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.CheckConstraint("id = 1", name="change_counter_singleton"),
    )
    op.execute("INSERT INTO change_counter (id, seq) VALUES (1, 0)")


def downgrade() -> None:
    """Drop them."""
    op.drop_table("change_counter")
    op.drop_table("changes")
    op.drop_index("search_words_tile", "search_words")
    op.drop_column("spaces", "updated_at")
    op.drop_column("spaces", "revision")
