"""learners: owner, owner_epoch, lease_until (the serving process's lease on a learner)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04

Plain ADD COLUMNs (nullable, or with a server default), which SQLite and PostgreSQL both run in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("learners", sa.Column("owner", sa.String(length=128), nullable=True))
    op.add_column(
        "learners", sa.Column("owner_epoch", sa.Integer(), server_default=sa.text("0"), nullable=False)
    )
    op.add_column("learners", sa.Column("lease_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("learners") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("owner_epoch")
        batch.drop_column("owner")
