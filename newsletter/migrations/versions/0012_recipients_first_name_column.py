"""recipients keep the greeting's name in a column, not in a JSON object

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 19:55:00

`substitutions` only ever held {"first_name": ...}. PostgreSQL built that object for every row a
freeze wrote (a quarter of the INSERT) and parsed it again for every row a batch read.
"""

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column('recipients', sa.Column('first_name', sa.String(length=200), nullable=False, server_default=''))
    read = "substitutions ->> 'first_name'" if postgres else "json_extract(substitutions, '$.first_name')"
    op.execute(f"UPDATE recipients SET first_name = COALESCE({read}, '')")
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        batch_op.alter_column('first_name', server_default=None)
        batch_op.drop_column('substitutions')


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column('recipients', sa.Column('substitutions', sa.JSON(), nullable=False, server_default='{}'))
    build = "json_build_object('first_name', first_name)" if postgres else "json_object('first_name', first_name)"
    op.execute(f"UPDATE recipients SET substitutions = {build}")
    with op.batch_alter_table('recipients', schema=None) as batch_op:
        batch_op.alter_column('substitutions', server_default=None)
        batch_op.drop_column('first_name')
