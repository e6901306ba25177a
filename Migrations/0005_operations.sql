-- Operations: a worker may finish draining ('drained'), operators' per-unit controls, and the audit trail.
ALTER TABLE workers DROP CONSTRAINT workers_state_check;
ALTER TABLE workers ADD CONSTRAINT workers_state_check
    CHECK (state IN ('active', 'cordoned', 'draining', 'drained', 'dead'));

-- What operators set on a unit (paused balancers, policy, expert rules), as one JSON document with one version,
-- so that concurrent changes to a unit are detected whatever part they touch.
CREATE TABLE unit_controls (
    unit_id    text PRIMARY KEY REFERENCES units (id) ON DELETE CASCADE,
    version    bigint NOT NULL CHECK (version >= 1),
    controls   jsonb NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Every operator action: who (the token's name), what, on which target, why, and the target before and after.
-- No foreign keys: the trail outlives the units and workers it names.
CREATE TABLE audit_log (
    id       bigserial PRIMARY KEY,
    at       timestamptz NOT NULL,
    actor    text NOT NULL,
    action   text NOT NULL,
    target   text NOT NULL,
    reason   text,
    before   jsonb,
    after    jsonb
);
CREATE INDEX audit_log_by_target ON audit_log (target, id);
CREATE INDEX audit_log_by_action ON audit_log (action, id);
CREATE INDEX audit_log_by_time ON audit_log (at);

-- Append-only: rows can be added, never changed or removed, whoever asks.
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
