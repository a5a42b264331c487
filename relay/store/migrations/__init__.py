"""Alembic migrations of the store, run at start-up by relay.store.db.migrate().

A new revision: change relay/store/models.py, then
    .venv/bin/alembic -c relay/store/migrations/alembic.ini revision --autogenerate -m "what"
(against DATABASE_URL, or the SQLite file in RELAY_DATA_DIR), rename the file vNNNN_what.py,
and review it: it must work on SQLite (batch mode) and PostgreSQL.
"""
