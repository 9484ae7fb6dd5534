"""datasets: files tenants uploaded for their jobs (format, stored location, statistics, cleaning report)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-15

A new table only, which SQLite and PostgreSQL both create as written; no existing row changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# lyceum_core.identity's lengths, copied: migrations must not import code that keeps changing after them.
TENANT = sa.String(length=63)
DATASET_ID = sa.String(length=35)  # ds- and 32 hex digits


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("dataset_id", DATASET_ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("data_file", sa.String(length=255), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("cleaning", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "dataset_id", name=op.f("pk_datasets")),
    )


def downgrade() -> None:
    op.drop_table("datasets")
