"""Alembic's environment and revisions of Tollway's schema (see tollway.db.migrations, which runs them)."""
