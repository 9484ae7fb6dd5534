"""feedback: feedback items and the per-adapter distillation slot; completions keep a digest of their response

Revision ID: 0007
Revises: 0006
Create Date: 2027-01-05

Two new tables, and a nullable column with an index on completions (existing rows keep NULL: they were
recorded before the digest was kept); SQLite and PostgreSQL both apply it as written.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# lyceum_core.identity's and the models' lengths, copied: migrations must not import code that keeps changing.
TENANT = sa.String(length=63)
FEEDBACK_ID = sa.String(length=35)  # fb- and 32 hex digits
COMPLETION_ID = sa.String(length=37)  # cmpl- and 32 hex digits
MODEL_NAME = sa.String(length=128)
JOB_ID = sa.String(length=32)


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("feedback_id", FEEDBACK_ID, nullable=False),
        sa.Column("completion_id", COMPLETION_ID, nullable=False),
        sa.Column("adapter", MODEL_NAME, nullable=False),
        sa.Column("version", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("training", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("job_id", JOB_ID, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant", "feedback_id", name=op.f("pk_feedback")),
        sa.UniqueConstraint("tenant", "idempotency_key", name="uq_feedback_tenant_idempotency_key"),
    )
    op.create_index(
        "ix_feedback_tenant_adapter_state_created_at",
        "feedback",
        ["tenant", "adapter", "state", "created_at"],
        unique=False,
    )
    op.create_index("ix_feedback_job_id", "feedback", ["job_id"], unique=False)
    op.create_table(
        "adapter_distillations",
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("adapter", MODEL_NAME, nullable=False),
        sa.Column("job_id", JOB_ID, nullable=True),
        sa.Column("since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("tenant", "adapter", name=op.f("pk_adapter_distillations")),
    )
    with op.batch_alter_table("completions") as batch:
        batch.add_column(sa.Column("response_sha256", sa.String(length=64), nullable=True))
    op.create_index(
        "ix_completions_tenant_response_sha256",
        "completions",
        ["tenant", "response_sha256"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_completions_tenant_response_sha256", table_name="completions")
    with op.batch_alter_table("completions") as batch:
        batch.drop_column("response_sha256")
    op.drop_table("adapter_distillations")
    op.drop_index("ix_feedback_job_id", table_name="feedback")
    op.drop_index("ix_feedback_tenant_adapter_state_created_at", table_name="feedback")
    op.drop_table("feedback")
