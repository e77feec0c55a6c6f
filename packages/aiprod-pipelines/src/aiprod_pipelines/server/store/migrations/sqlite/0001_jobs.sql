-- The jobs of the HTTP server (SQLite). Times are Unix seconds (REAL, UTC); booleans 0/1;
-- request, images and image_data are JSON text.
CREATE TABLE aiprod_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    request TEXT NOT NULL,
    images TEXT NOT NULL DEFAULT '[]',
    image_data TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    expires_at REAL,
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    video_key TEXT,
    video_removed INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    webhook_url TEXT,
    worker_id TEXT,
    lease_expires_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    delete_requested INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX aiprod_jobs_state_seq ON aiprod_jobs (state, seq);

CREATE INDEX aiprod_jobs_expires_at ON aiprod_jobs (expires_at) WHERE expires_at IS NOT NULL;

CREATE INDEX aiprod_jobs_lease ON aiprod_jobs (lease_expires_at) WHERE state = 'running';
