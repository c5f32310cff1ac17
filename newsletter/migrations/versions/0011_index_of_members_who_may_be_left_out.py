"""a partial index of the members the eligibility rule could leave out

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 19:40:00

Members who are not active, have no address or have a pause set: few on a list. Each batch is
read against this index (an anti-join) instead of looking up the member of each of its recipients.
"""

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

PREDICATE = sa.text("status != 'active' OR email IS NULL OR paused_until IS NOT NULL")


def upgrade() -> None:
    op.create_index('ix_subscribers_may_be_left_out', 'subscribers', ['id'],
                    sqlite_where=PREDICATE, postgresql_where=PREDICATE)


def downgrade() -> None:
    op.drop_index('ix_subscribers_may_be_left_out', table_name='subscribers')
