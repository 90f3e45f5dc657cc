"""Vector tile columns: each space's Web Mercator position and key, and prefix sums.

Written by the loader from geosearch.tiles.TileIndex: ``tile_key`` (Morton key of the
space's pixel at zoom 24; NULL outside the Web Mercator square), ``tile_x``/``tile_y``
(world position in [0, 1)), and for active spaces in some tile, ``tile_rank`` (place in
(key, id) order) and ``tile_sum_x``/``tile_sum_y`` (the sums of the positions before it).
``dataset_state`` holds the totals, so that a cluster cell is counted from two rows.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
_SPACES = (("tile_key", sa.BigInteger), ("tile_x", sa.Float(53)), ("tile_y", sa.Float(53)),
           ("tile_rank", sa.BigInteger), ("tile_sum_x", sa.Float(53)),
           ("tile_sum_y", sa.Float(53)))
_STATE = (("tile_count", sa.BigInteger), ("tile_sum_x", sa.Float(53)),
          ("tile_sum_y", sa.Float(53)))


def upgrade() -> None:
    """Add the columns and the index of tile ranges (active spaces in some tile, which
    is what ``tile_rank IS NOT NULL`` means)."""
    for name, kind in _SPACES:
        op.add_column("spaces", sa.Column(name, kind))
    for name, kind in _STATE:
        op.add_column("dataset_state", sa.Column(name, kind))
    # Covering: a filtered tile is an index-only scan (loads COPY with FREEZE, so that
    # every page is all-visible at once), only single spaces are read from the table.
    op.create_index("spaces_tile", "spaces", ["tile_key", "tile_rank"],
                    postgresql_include=["amenity_mask", "capacity", "country", "city_key",
                                        "tile_x", "tile_y"],
                    postgresql_where=sa.text("tile_rank IS NOT NULL"))


def downgrade() -> None:
    """Drop them."""
    op.drop_index("spaces_tile", "spaces")
    for name, _ in _STATE:
        op.drop_column("dataset_state", name)
    for name, _ in _SPACES:
        op.drop_column("spaces", name)
