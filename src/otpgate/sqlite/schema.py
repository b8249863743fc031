"""Every table of the embedded backend, as an ordered list of migrations.

``PRAGMA user_version`` holds how many migrations a database file has applied. Entries are
only ever appended: a released migration never changes.
"""

from __future__ import annotations

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        # store: recipients, their OTP records, the send ledger, idempotency, API keys
        """CREATE TABLE IF NOT EXISTS recipients (
            key TEXT PRIMARY KEY, state BLOB NOT NULL) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS otps (
            id TEXT PRIMARY KEY, recipient TEXT NOT NULL, status TEXT NOT NULL,
            expires_at REAL NOT NULL, send_count INTEGER NOT NULL, record BLOB NOT NULL
        ) WITHOUT ROWID""",
        """CREATE INDEX IF NOT EXISTS otps_due ON otps (expires_at, recipient)
            WHERE status = 'pending'""",
        """CREATE TABLE IF NOT EXISTS ledger (
            otp_id TEXT NOT NULL, send_no INTEGER NOT NULL, channel TEXT NOT NULL,
            driver TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
            lease_until REAL NOT NULL, updated_at REAL NOT NULL,
            provider_id TEXT, error TEXT,
            PRIMARY KEY (otp_id, send_no, channel))""",
        """CREATE TABLE IF NOT EXISTS idempotency (
            key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,
            body BLOB NOT NULL, created_at REAL NOT NULL, expires_at REAL NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency (expires_at)",
        """CREATE TABLE IF NOT EXISTS api_keys (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash BLOB NOT NULL,
            created_at REAL NOT NULL, revoked_at REAL)""",
        # bus: durable subscriptions, the outbox, per-subscription deliveries, dead letters
        """CREATE TABLE IF NOT EXISTS subscriptions (
            name TEXT PRIMARY KEY, filter TEXT NOT NULL, updated_at REAL NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, event BLOB NOT NULL,
            created_at REAL NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS deliveries (
            subscription TEXT NOT NULL, seq INTEGER NOT NULL REFERENCES outbox (seq),
            deliveries INTEGER NOT NULL DEFAULT 0, available_at REAL NOT NULL,
            lease_until REAL NOT NULL DEFAULT 0, lease_owner TEXT,
            PRIMARY KEY (subscription, seq)) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS deliveries_seq ON deliveries (seq)",
        """CREATE TABLE IF NOT EXISTS dead_letters (
            id INTEGER PRIMARY KEY, subscription TEXT NOT NULL, seq INTEGER NOT NULL,
            event BLOB NOT NULL, error TEXT NOT NULL, deliveries INTEGER NOT NULL,
            failed_at REAL NOT NULL)""",
        """CREATE INDEX IF NOT EXISTS dead_letters_subscription
            ON dead_letters (subscription, id)""",
        # dev mode: what the capture driver kept instead of sending
        """CREATE TABLE IF NOT EXISTS captured (
            n INTEGER PRIMARY KEY, id TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE,
            otp_id TEXT NOT NULL, "to" TEXT NOT NULL, channel TEXT NOT NULL, subject TEXT,
            body TEXT NOT NULL, sent_at REAL NOT NULL)""",
        'CREATE INDEX IF NOT EXISTS captured_to ON captured ("to", n)',
    ),
    (
        # retention: when a recipient's state last changed, so that idle ones can go
        "ALTER TABLE recipients ADD COLUMN touched_at REAL NOT NULL DEFAULT 0",
        "CREATE INDEX IF NOT EXISTS recipients_touched ON recipients (touched_at)",
        "CREATE INDEX IF NOT EXISTS otps_final ON otps (expires_at) WHERE status <> 'pending'",
    ),
    (
        # receipts: a provider's delivery report names the send by the provider's id
        """CREATE INDEX IF NOT EXISTS ledger_provider ON ledger (driver, provider_id)
            WHERE provider_id IS NOT NULL""",
        # one row of facts about the database itself (the master secret's check value)
        """CREATE TABLE IF NOT EXISTS meta (
            name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID""",
    ),
    (
        # tenants: every key acts for one tenant; admin keys may unlock its recipients
        "ALTER TABLE api_keys ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default'",
        "ALTER TABLE api_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0",
    ),
    (
        # which consumer holds a send claim, so that a dead one's claims are handed on
        "ALTER TABLE ledger ADD COLUMN lease_owner TEXT",
        """CREATE INDEX IF NOT EXISTS ledger_sending ON ledger (lease_owner)
            WHERE status = 'sending'""",
    ),
    (
        # client keys, scopes, browser origins; a previous secret alive during a rotation
        "ALTER TABLE api_keys ADD COLUMN kind TEXT NOT NULL DEFAULT 'server'",
        "ALTER TABLE api_keys ADD COLUMN scopes TEXT",
        "ALTER TABLE api_keys ADD COLUMN origins TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE api_keys ADD COLUMN old_secret_hash BLOB",
        "ALTER TABLE api_keys ADD COLUMN old_until REAL",
    ),
)
