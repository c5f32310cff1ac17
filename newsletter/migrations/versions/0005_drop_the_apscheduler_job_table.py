"""drop the apscheduler job table

The scheduled_sends rows are the schedule's one truth; the daemon keeps its APScheduler jobs in
memory. A database used by an earlier version still has APScheduler's own job table, whose
pickled jobs name a function that no longer exists: drop it, so no second schedule is left to
mislead anyone. A fresh database never had it (IF EXISTS).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 22:33:28.876268
"""

from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TABLE IF EXISTS apscheduler_jobs")


def downgrade() -> None:
    # Nothing to restore: the earlier daemon creates its job table on start and re-creates every
    # job from the scheduled_sends rows.
    pass
