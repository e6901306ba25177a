-- The worker protocol: published expert placements, workers' acknowledgements, and downsampled telemetry.

-- Every placement ever published for a unit; versions only move forward. phy2log is [layer][slot] -> expert.
CREATE TABLE placements (
    unit_id    text NOT NULL REFERENCES units (id) ON DELETE CASCADE,
    version    integer NOT NULL CHECK (version >= 1),
    phy2log    jsonb NOT NULL,
    trigger    text NOT NULL,
    created_at timestamptz NOT NULL,
    PRIMARY KEY (unit_id, version)
);

-- A worker applied a placement version.
CREATE TABLE placement_acks (
    worker_id text NOT NULL,
    unit_id   text NOT NULL,
    version   integer NOT NULL,
    acked_at  timestamptz NOT NULL,
    PRIMARY KEY (unit_id, worker_id, version)
);

-- Load figures of each worker, downsampled (about one row per worker per 10 s). No foreign key: history outlives
-- the registry entry, and retention deletes by time.
CREATE TABLE telemetry_samples (
    worker_id               text NOT NULL,
    unit_id                 text NOT NULL,
    seq                     bigint NOT NULL,
    sent_at                 timestamptz NOT NULL,
    received_at             timestamptz NOT NULL,
    prefill_queued_tokens   bigint,
    prefill_queued_requests bigint,
    prefill_attention_work  bigint,
    decode_kv_tokens_used   bigint,
    decode_kv_capacity      bigint,
    decode_running_requests bigint
);
CREATE INDEX telemetry_samples_by_worker ON telemetry_samples (worker_id, received_at);
CREATE INDEX telemetry_samples_by_time ON telemetry_samples (received_at);

-- Tokens routed to each physical expert slot of a unit, summed over its workers' reports in one window.
-- slot_tokens is [layer][slot]; placement_version says which expert each slot held.
CREATE TABLE expert_load_windows (
    unit_id           text NOT NULL,
    window_start      timestamptz NOT NULL,
    window_end        timestamptz NOT NULL,
    placement_version integer NOT NULL,
    reports           integer NOT NULL,
    slot_tokens       jsonb NOT NULL
);
CREATE INDEX expert_load_windows_by_unit ON expert_load_windows (unit_id, window_end);
CREATE INDEX expert_load_windows_by_time ON expert_load_windows (window_end);
