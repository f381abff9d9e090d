"""Persistence: SQLAlchemy models, Alembic migrations, engine/session set-up."""
