"""Text search: each space's folded words as a tsvector, and the load layout.

``search`` holds the words of the space's name, address and city as folded by
geosearch.text (NFKD, no combining marks, case-folded), written by the loader as they
are (no parser, no dictionary); a GIN index serves prefix queries (``'caf':*``).
``dataset_state.layout`` is the loader's layout of the rows: a dataset loaded before a
column it fills existed is loaded again, even when its version is unchanged.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TSVECTOR

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    """Add the column, its index, the words' counts and the layout."""
    op.add_column("spaces", sa.Column("search", TSVECTOR))
    # How many active spaces have each word: a nearest query with a rare term is then
    # answered from the text index rather than by walking outwards from the origin.
    op.create_table("search_words",
                    sa.Column("word", sa.Text(collation="C"), primary_key=True),
                    sa.Column("spaces", sa.Integer, nullable=False))
    op.create_index("spaces_search_gin", "spaces", ["search"], postgresql_using="gin")
    op.add_column("dataset_state", sa.Column("layout", sa.Integer))


def downgrade() -> None:
    """Drop them."""
    op.drop_column("dataset_state", "layout")
    op.drop_table("search_words")
    op.drop_index("spaces_search_gin", "spaces")
    op.drop_column("spaces", "search")
