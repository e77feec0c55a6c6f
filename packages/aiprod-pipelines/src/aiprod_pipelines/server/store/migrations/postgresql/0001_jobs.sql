-- The jobs of the HTTP server (PostgreSQL), shared by every replica.
CREATE TABLE aiprod_jobs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    request JSONB NOT NULL,
    images JSONB NOT NULL DEFAULT '[]',
    image_data JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    expires_at TIMESTAMPTZ,
    progress DOUBLE PRECISION NOT NULL DEFAULT 0,
    error TEXT,
    video_key TEXT,
    video_removed BOOLEAN NOT NULL DEFAULT false,
    idempotency_key TEXT UNIQUE,
    request_hash TEXT,
    webhook_url TEXT,
    worker_id TEXT,
    lease_expires_at TIMESTAMPTZ,
    attempts INTEGER NOT NULL DEFAULT 0,
    cancel_requested BOOLEAN NOT NULL DEFAULT false,
    delete_requested BOOLEAN NOT NULL DEFAULT false
);

CREATE INDEX aiprod_jobs_state_seq ON aiprod_jobs (state, seq);

CREATE INDEX aiprod_jobs_expires_at ON aiprod_jobs (expires_at) WHERE expires_at IS NOT NULL;

CREATE INDEX aiprod_jobs_lease ON aiprod_jobs (lease_expires_at) WHERE state = 'running';
