"""recipients keyed by edition and member (no surrogate id)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 03:45:00

The unique (edition, subscriber_id) becomes the primary key and the id column goes: its sequence
and index cost a quarter of the freezing INSERT on PostgreSQL. PostgreSQL changes the table in one
ALTER TABLE (building the key's index once); SQLite copies the table, as it does for any such change.
"""

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE recipients DROP CONSTRAINT pk_recipients, "
                   "DROP CONSTRAINT uq_recipients_edition_subscriber_id, DROP COLUMN id, "
                   "ADD CONSTRAINT pk_recipients PRIMARY KEY (edition, subscriber_id)")
        return
    with op.batch_alter_table('recipients', schema=None, recreate='always') as batch_op:
        batch_op.drop_constraint('uq_recipients_edition_subscriber_id', type_='unique')
        batch_op.drop_column('id')
        batch_op.create_primary_key('pk_recipients', ['edition', 'subscriber_id'])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE recipients DROP CONSTRAINT pk_recipients, ADD COLUMN id BIGSERIAL, "
                   "ADD CONSTRAINT pk_recipients PRIMARY KEY (id), "
                   "ADD CONSTRAINT uq_recipients_edition_subscriber_id UNIQUE (edition, subscriber_id)")
        return
    with op.batch_alter_table('recipients', schema=None, recreate='always') as batch_op:
        batch_op.drop_constraint('pk_recipients', type_='primary')
        batch_op.add_column(sa.Column('id', sa.Integer(), primary_key=True))  # SQLite numbers the rows
        batch_op.create_unique_constraint('uq_recipients_edition_subscriber_id', ['edition', 'subscriber_id'])
