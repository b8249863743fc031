"""SQLite plumbing shared by the embedded store, its outbox bus and its capture sink: one
file, its connections, the group-committing writer and the schema."""
