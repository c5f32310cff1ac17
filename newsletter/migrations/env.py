"""Alembic environment: runs on the engine handed over by newsletter.db (no alembic.ini needed)."""

from alembic import context

from newsletter.models import Base

IGNORED_TABLES = {"apscheduler_jobs"}  # owned by APScheduler's SQLAlchemyJobStore


def include_object(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    return not (type_ == "table" and name in IGNORED_TABLES)


def run_migrations() -> None:
    engine = context.config.attributes["engine"]
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_object=include_object,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run_migrations()
