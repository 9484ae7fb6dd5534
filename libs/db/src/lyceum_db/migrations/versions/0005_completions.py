"""completions: what the samplers generated when asked to record it (ids, log-probs, params, finish reason)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-08

A new table and its indexes only, which SQLite and PostgreSQL both create as written; no existing row changes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# lyceum_core.identity's lengths, copied: migrations must not import code that keeps changing after them.
TENANT = sa.String(length=63)
COMPLETION_ID = sa.String(length=37)  # cmpl- and 32 hex digits
SUBJECT = sa.String(length=128)


def upgrade() -> None:
    op.create_table(
        "completions",
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("completion_id", COMPLETION_ID, nullable=False),
        sa.Column("subject", SUBJECT, nullable=True),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("adapter", sa.Text(), nullable=True),
        sa.Column("prompt_ids", sa.JSON(), nullable=False),
        sa.Column("token_ids", sa.JSON(), nullable=False),
        sa.Column("logprobs", sa.JSON(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("finish_reason", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "completion_id", name=op.f("pk_completions")),
    )
    op.create_index("ix_completions_created_at", "completions", ["created_at"], unique=False)
    op.create_index(
        "ix_completions_tenant_subject_created_at",
        "completions",
        ["tenant", "subject", "created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_completions_tenant_subject_created_at", table_name="completions")
    op.drop_index("ix_completions_created_at", table_name="completions")
    op.drop_table("completions")
