# Alembic environment of the annotation database: run on the connection `mlproj.db.Database.migrate` passes in.
from alembic import context

from mlproj.db import Base

connection = context.config.attributes['connection']
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=connection.dialect.name == 'sqlite')
with context.begin_transaction():
    context.run_migrations()
