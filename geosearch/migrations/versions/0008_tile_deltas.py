"""Tiles kept exact under writes: the base ranks of spaces that left their place, the
deltas of the writes since the load, and the ranks of written spaces.

A load ranks every active space in the Web Mercator square and writes the prefix sums of
positions in that order (0003); an unfiltered cluster cell is counted from the sums at its
two bounds. A write does not rewrite those sums. Instead:

- ``tile_ghosts`` keeps the rank and sums of a loaded space that a write moved or closed,
  as the load left them, so that the sums at any bound are still found (the first of the
  ranked spaces in place and the ghosts at or after it);
- ``tile_deltas`` holds what each write changed per key: ``n`` spaces (+1 where a space
  came, -1 where one left) and the sums of their positions, added to each cell;
- ``tile_written_rank`` gives a created or moved space a rank of its own (above every
  load's), which puts it in the point tiles and the filtered clusters; its prefix sum
  columns stay NULL, which is how the cells' sums tell it from a loaded space.

A load that replaces the dataset empties both tables (geosearch.tiledeltas).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
# Written ranks start here: a load ranks fewer spaces than this
WRITTEN_RANK_START = 1 << 40


def upgrade() -> None:
    """Create the two tables and the sequence."""
    op.create_table(
        "tile_ghosts",
        sa.Column("tile_key", sa.BigInteger, primary_key=True),
        sa.Column("tile_rank", sa.BigInteger, primary_key=True),
        sa.Column("tile_sum_x", sa.Float(53), nullable=False),
        sa.Column("tile_sum_y", sa.Float(53), nullable=False),
    )
    op.create_table(
        "tile_deltas",
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("tile_key", sa.BigInteger, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("sum_x", sa.Float(53), nullable=False),
        sa.Column("sum_y", sa.Float(53), nullable=False),
    )
    op.create_index("tile_deltas_key", "tile_deltas", ["tile_key"],
                    postgresql_include=["n", "sum_x", "sum_y"])
    op.execute(f"CREATE SEQUENCE tile_written_rank START {WRITTEN_RANK_START}")


def downgrade() -> None:
    """Drop them."""
    op.execute("DROP SEQUENCE tile_written_rank")
    op.drop_table("tile_deltas")
    op.drop_table("tile_ghosts")
