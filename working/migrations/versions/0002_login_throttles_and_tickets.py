"""Login throttling by (username, client) instead of an account lock; one-time login tickets.

The account lock (accounts.failed_logins, locked_until) let anyone lock anyone out: it is
replaced by login_throttles, keyed by the name tried and the client that tried it, so that an
attacker only slows down themselves. A session now starts without a cookie token: the browser
redeems a one-time ticket over HTTP for an HttpOnly cookie (working/session_cookie.py).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "login_throttles",
        sa.Column("username", sa.String(32), primary_key=True),
        sa.Column("client", sa.String(64), primary_key=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("delay_s", sa.Integer, nullable=False),
        # Seconds since the epoch: the one update that counts a failure computes it in SQL,
        # and date arithmetic is not portable between SQLite and PostgreSQL.
        sa.Column("blocked_until", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False, index=True),
    )
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("failed_logins")
        batch.drop_column("locked_until")
    with op.batch_alter_table("login_sessions") as batch:
        batch.alter_column("token_hash", existing_type=sa.String(64), nullable=True)
        batch.add_column(sa.Column("ticket_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("ticket_expires_at", _timestamp, nullable=True))
        batch.create_index("ix_login_sessions_ticket_hash", ["ticket_hash"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("login_sessions") as batch:
        batch.drop_index("ix_login_sessions_ticket_hash")
        batch.drop_column("ticket_expires_at")
        batch.drop_column("ticket_hash")
    op.execute("DELETE FROM login_sessions WHERE token_hash IS NULL")
    with op.batch_alter_table("login_sessions") as batch:
        batch.alter_column("token_hash", existing_type=sa.String(64), nullable=False)
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("failed_logins", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("locked_until", _timestamp, nullable=True))
    op.drop_table("login_throttles")
