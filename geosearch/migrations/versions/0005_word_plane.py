"""The word plane: an index of words and places together, for nearest with ``q``.

``word_points`` holds one point per (active space, word) pair, in a plane where every
word has a tile of its own: ``x = tile * 1000 + lon + 180``, ``y = lat`` (tiles 1000 units
apart, each 360 wide: a word's points never mix with another's). Its GiST index (built
by sorting, covering ``place``) walks one word's spaces outwards from an origin, or reads
those in a longitude-latitude box, without reading the table.
``search_words.tile`` is the word's tile, NULL for a word so common (in at least an
eighth of the active spaces) that walking outwards meets k of its spaces within 8k.
``spaces.place`` numbers the spaces of a load (a ``word_points`` row names its space so).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    """Add the table, its index and the two columns."""
    op.add_column("spaces", sa.Column("place", sa.Integer))
    op.create_index("spaces_place", "spaces", ["place"])
    op.add_column("search_words", sa.Column("tile", sa.Integer))
    op.execute("CREATE TABLE word_points (pt point NOT NULL, place integer NOT NULL)")
    op.create_index("word_points_pt", "word_points", ["pt"], postgresql_using="gist",
                    postgresql_include=["place"])


def downgrade() -> None:
    """Drop them."""
    op.drop_table("word_points")
    op.drop_column("search_words", "tile")
    op.drop_index("spaces_place", "spaces")
    op.drop_column("spaces", "place")
