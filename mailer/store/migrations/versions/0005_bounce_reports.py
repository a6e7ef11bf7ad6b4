"""bounce reports read from the bounce mailbox or a file; suppressions lifted by staff

Revision ID: 0005_bounce_reports
Revises: 0004_relay_circuits
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from mailer.store.models import UTCDateTime

revision = "0005_bounce_reports"
down_revision = "0004_relay_circuits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("diagnostic", sa.Text(), nullable=False),
        sa.Column("reporting_mta", sa.String(length=255), nullable=False),
        sa.Column("named_address", sa.String(length=320), nullable=False),
        sa.Column("matched_by", sa.String(length=20), nullable=False),
        sa.Column("message_pk", sa.Integer(), nullable=True),
        sa.Column("contact_id", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=400), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("arrived_at", UTCDateTime(), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["contact_id"], ["contacts.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["message_pk"], ["messages.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
    )
    op.create_index("ix_bounce_reports_contact_id", "bounce_reports", ["contact_id"], unique=False)
    op.create_index("ix_bounce_reports_message_pk", "bounce_reports", ["message_pk"], unique=False)
    op.create_table(
        "suppression_lifts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("suppressed_at", UTCDateTime(), nullable=False),
        sa.Column("lifted_by", sa.String(length=100), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("lifted_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_suppression_lifts_email_key", "suppression_lifts", ["email_key"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_suppression_lifts_email_key", table_name="suppression_lifts")
    op.drop_table("suppression_lifts")
    op.drop_index("ix_bounce_reports_message_pk", table_name="bounce_reports")
    op.drop_index("ix_bounce_reports_contact_id", table_name="bounce_reports")
    op.drop_table("bounce_reports")
