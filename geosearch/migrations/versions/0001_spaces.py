"""Spaces, the current dataset, and the log of ingest runs.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geography, Geometry
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision = "0001"
down_revision = None


def upgrade() -> None:
    """Create the tables and their indexes."""
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    op.create_table(
        "spaces",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("city", sa.Text, nullable=False),
        sa.Column("city_key", sa.Text, nullable=False),
        sa.Column("postcode", sa.Text),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("lat", sa.Float(53), nullable=False),
        sa.Column("lon", sa.Float(53), nullable=False),
        sa.Column("geog", Geography("POINT", 4326, spatial_index=False), nullable=False),
        sa.Column("geom", Geometry("POINT", 4326, spatial_index=False), nullable=False),
        sa.Column("amenities", ARRAY(sa.Text), nullable=False),
        # The same set as bits (geosearch.model.Amenity.bit): a filter the planner cannot
        # serve from an index, so that KNN keeps walking the GiST index in distance order.
        sa.Column("amenity_mask", sa.BigInteger, nullable=False),
        sa.Column("capacity", sa.Integer),
        sa.Column("price_day", sa.Float(53)),
        sa.Column("currency", sa.String(3)),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("h3_r7", sa.Text, nullable=False),
        sa.Column("h3_r8", sa.Text, nullable=False),
        sa.Column("h3_r9", sa.Text, nullable=False),
        sa.Column("geocode_precision", sa.Text, nullable=False),
        sa.Column("feed_row", sa.Integer, nullable=False),
        sa.Column("dataset_version", sa.Text, nullable=False),
        sa.CheckConstraint("status IN ('active', 'inactive')", name="spaces_status"),
    )
    op.create_index("spaces_geog_gist", "spaces", ["geog"], postgresql_using="gist")
    op.create_index("spaces_geom_gist", "spaces", ["geom"], postgresql_using="gist")
    op.create_index("spaces_amenities_gin", "spaces", ["amenities"], postgresql_using="gin")
    for column in ("h3_r7", "h3_r8", "h3_r9", "country", "city_key"):
        op.create_index(f"spaces_{column}", "spaces", [column])
    op.create_table(
        "dataset_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feed", sa.Text, nullable=False),
        sa.CheckConstraint("id = 1", name="dataset_state_singleton"),
    )
    op.create_table(
        "ingest_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feed", sa.Text, nullable=False),
        sa.Column("dataset_version", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("report", JSONB, nullable=False),
    )


def downgrade() -> None:
    """Drop everything upgrade created (the postgis extension stays)."""
    op.drop_table("ingest_runs")
    op.drop_table("dataset_state")
    op.drop_table("spaces")
