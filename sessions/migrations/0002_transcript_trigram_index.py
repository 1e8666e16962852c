"""Trigram index for transcript search (sessions/search.py, docs/search.md).

PostgreSQL only: pg_trgm splits text into three-character pieces whatever
the language, so it matches Japanese, which has no spaces for a word-based
full-text parser to split on. The index is on UPPER(text) because Django's
``icontains`` compiles to ``UPPER(text) LIKE UPPER(%s)`` on PostgreSQL; the
planner uses it for terms of three characters or more. SQLite (``make run``)
gets no index: the same query scans the clinic's segments there.

The index is not declared on the model: SQLite can't build a GIN index, and
a model-level index would be created (and fail) there.
"""

from django.db import migrations

INDEX = "consultations_segment_text_trgm"


class PostgresOnly(migrations.RunSQL):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    dependencies = [("consultations", "0001_initial")]

    operations = [
        PostgresOnly(
            sql="CREATE EXTENSION IF NOT EXISTS pg_trgm",
            # Left in place: other database objects may use it.
            reverse_sql=migrations.RunSQL.noop,
        ),
        PostgresOnly(
            sql=f'CREATE INDEX IF NOT EXISTS {INDEX} ON consultations_transcriptsegment USING gin (UPPER("text") gin_trgm_ops)',
            reverse_sql=f"DROP INDEX IF EXISTS {INDEX}",
        ),
    ]
