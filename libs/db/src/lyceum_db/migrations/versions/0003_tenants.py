"""tenants and api_keys; a tenant column in every tenant-owned table, existing rows moved into `default`

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Written by hand to run on SQLite (batch mode rebuilds each table; env.py turns foreign keys off meanwhile, so
rebuilding a parent table cannot cascade into its children) and on PostgreSQL (batch mode runs plain ALTERs).
Each tenant column is added nullable, filled with `default`, then made NOT NULL: no server default remains.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_TENANT = "default"  # lyceum_core.identity.DEFAULT_TENANT, copied: migrations must not import models
TENANT = sa.String(length=63)
OWNED = ("learners", "learner_events", "jobs", "model_versions", "model_aliases", "model_alias_events")


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("tenant_id", TENANT, nullable=False),
        sa.Column("quotas", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_tenants")),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("tenant", TENANT, nullable=False),
        sa.Column("subject", sa.String(length=128), nullable=True),
        sa.Column("name", sa.String(length=128), nullable=True),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant"], ["tenants.tenant_id"], name=op.f("fk_api_keys_tenant_tenants"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("key_id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_tenant"), "api_keys", ["tenant"], unique=False)

    # Existing rows move into the default tenant (created if it owns any); existing models stay private to it.
    conn = op.get_bind()
    if any(conn.execute(sa.text(f"SELECT 1 FROM {table}")).first() for table in OWNED):
        tenants = sa.table(
            "tenants",
            sa.column("tenant_id", TENANT),
            sa.column("quotas", sa.JSON()),
            sa.column("created_at", sa.DateTime(timezone=True)),
        )
        now = datetime.now(UTC)
        op.bulk_insert(tenants, [{"tenant_id": DEFAULT_TENANT, "quotas": {}, "created_at": now}])
    for table in OWNED:
        op.add_column(table, sa.Column("tenant", TENANT, nullable=True))
        op.execute(sa.text(f"UPDATE {table} SET tenant = :tenant").bindparams(tenant=DEFAULT_TENANT))
    op.add_column("model_versions", sa.Column("public", sa.Boolean(), nullable=True))
    op.execute(sa.text("UPDATE model_versions SET public = :public").bindparams(public=False))

    # Children first let go of their parents' keys, which then gain the tenant (PostgreSQL needs this order).
    with op.batch_alter_table("learner_events") as batch:
        batch.drop_constraint("fk_learner_events_learner_id_learners", type_="foreignkey")
    with op.batch_alter_table("model_aliases") as batch:
        batch.drop_constraint("fk_model_aliases_name_model_versions", type_="foreignkey")

    with op.batch_alter_table("learners") as batch:
        batch.alter_column("tenant", existing_type=TENANT, nullable=False)
        batch.drop_constraint("pk_learners", type_="primary")
        batch.create_primary_key("pk_learners", ["tenant", "learner_id"])
    with op.batch_alter_table("learner_events") as batch:
        batch.alter_column("tenant", existing_type=TENANT, nullable=False)
        batch.drop_constraint("pk_learner_events", type_="primary")
        batch.create_primary_key("pk_learner_events", ["tenant", "learner_id", "seq"])
        batch.create_foreign_key(
            "fk_learner_events_tenant_learners",
            "learners",
            ["tenant", "learner_id"],
            ["tenant", "learner_id"],
            ondelete="CASCADE",
        )

    with op.batch_alter_table("jobs") as batch:
        batch.alter_column("tenant", existing_type=TENANT, nullable=False)
        batch.drop_constraint("uq_jobs_idempotency_key", type_="unique")
        batch.create_unique_constraint("uq_jobs_tenant_idempotency_key", ["tenant", "idempotency_key"])
        batch.drop_index("ix_jobs_created_at_job_id")
        batch.create_index("ix_jobs_tenant_created_at_job_id", ["tenant", "created_at", "job_id"])

    with op.batch_alter_table("model_versions") as batch:
        batch.alter_column("tenant", existing_type=TENANT, nullable=False)
        batch.alter_column("public", existing_type=sa.Boolean(), nullable=False)
        batch.drop_constraint("uq_model_versions_name_job_id", type_="unique")
        batch.drop_constraint("pk_model_versions", type_="primary")
        batch.create_primary_key("pk_model_versions", ["tenant", "name", "version"])
        batch.create_unique_constraint("uq_model_versions_tenant_name_job_id", ["tenant", "name", "job_id"])
        batch.create_index("ix_model_versions_name_public", ["name", "public"])
    with op.batch_alter_table("model_aliases") as batch:
        batch.alter_column("tenant", existing_type=TENANT, nullable=False)
        batch.drop_constraint("pk_model_aliases", type_="primary")
        batch.create_primary_key("pk_model_aliases", ["tenant", "name", "alias"])
        batch.create_foreign_key(
            "fk_model_aliases_tenant_model_versions",
            "model_versions",
            ["tenant", "name", "version"],
            ["tenant", "name", "version"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("model_alias_events") as batch:
        batch.alter_column("tenant", existing_type=TENANT, nullable=False)
        batch.drop_index("ix_model_alias_events_name_alias")
        batch.create_index("ix_model_alias_events_tenant_name_alias", ["tenant", "name", "alias", "id"])


def downgrade() -> None:
    # Folding tenants back into one namespace could merge two tenants' learners or models: refuse instead.
    conn = op.get_bind()
    for table in OWNED:
        others = conn.execute(
            sa.text(f"SELECT COUNT(*) FROM {table} WHERE tenant <> :tenant").bindparams(tenant=DEFAULT_TENANT)
        ).scalar_one()
        if others:
            raise RuntimeError(
                f"cannot downgrade below 0003: {table} holds {others} row(s) of tenants other than "
                f"{DEFAULT_TENANT!r}; delete them first"
            )

    with op.batch_alter_table("model_alias_events") as batch:
        batch.drop_index("ix_model_alias_events_tenant_name_alias")
        batch.create_index("ix_model_alias_events_name_alias", ["name", "alias", "id"])
        batch.drop_column("tenant")
    with op.batch_alter_table("model_aliases") as batch:
        batch.drop_constraint("fk_model_aliases_tenant_model_versions", type_="foreignkey")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_index("ix_model_versions_name_public")
        batch.drop_constraint("uq_model_versions_tenant_name_job_id", type_="unique")
        batch.drop_constraint("pk_model_versions", type_="primary")
        batch.create_primary_key("pk_model_versions", ["name", "version"])
        batch.create_unique_constraint("uq_model_versions_name_job_id", ["name", "job_id"])
        batch.drop_column("public")
        batch.drop_column("tenant")
    with op.batch_alter_table("model_aliases") as batch:
        batch.drop_constraint("pk_model_aliases", type_="primary")
        batch.create_primary_key("pk_model_aliases", ["name", "alias"])
        batch.drop_column("tenant")
        batch.create_foreign_key(
            "fk_model_aliases_name_model_versions",
            "model_versions",
            ["name", "version"],
            ["name", "version"],
            ondelete="CASCADE",
        )

    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_tenant_created_at_job_id")
        batch.create_index("ix_jobs_created_at_job_id", ["created_at", "job_id"])
        batch.drop_constraint("uq_jobs_tenant_idempotency_key", type_="unique")
        batch.create_unique_constraint("uq_jobs_idempotency_key", ["idempotency_key"])
        batch.drop_column("tenant")

    with op.batch_alter_table("learner_events") as batch:
        batch.drop_constraint("fk_learner_events_tenant_learners", type_="foreignkey")
    with op.batch_alter_table("learners") as batch:
        batch.drop_constraint("pk_learners", type_="primary")
        batch.create_primary_key("pk_learners", ["learner_id"])
        batch.drop_column("tenant")
    with op.batch_alter_table("learner_events") as batch:
        batch.drop_constraint("pk_learner_events", type_="primary")
        batch.create_primary_key("pk_learner_events", ["learner_id", "seq"])
        batch.drop_column("tenant")
        batch.create_foreign_key(
            "fk_learner_events_learner_id_learners",
            "learners",
            ["learner_id"],
            ["learner_id"],
            ondelete="CASCADE",
        )

    op.drop_index(op.f("ix_api_keys_tenant"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("tenants")
