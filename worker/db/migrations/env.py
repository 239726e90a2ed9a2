"""Alembic environment: migrate the connection handed over by `worker.db.migrations.upgrade`."""

from alembic import context
from sqlalchemy import Connection, create_engine

connection = context.config.attributes.get("connection")


def run(conn: Connection) -> None:
    context.configure(connection=conn, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:  # `alembic -x url=... upgrade head` from a shell
    url = context.get_x_argument(as_dictionary=True).get("url") or "sqlite:///var/dunning.db"
    with create_engine(url).begin() as conn:
        run(conn)
