"""Storage: SQLAlchemy 2 async tables, repository functions returning frozen dataclasses, and
the Alembic migrations that build the schema on SQLite (default) or PostgreSQL."""
