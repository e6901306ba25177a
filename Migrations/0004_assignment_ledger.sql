-- The attention balancers' ledger: every request routed to a rank, with what the balancer saw when it chose, so an
-- operator can tell where a request went and why. Written in batches behind the assignment path. No foreign keys:
-- the ledger outlives registry entries. A gateway that re-uses an id after Fulcrum forgot it gets a second row;
-- the newest one answers.
CREATE TABLE assignments (
    request_id            text NOT NULL,
    phase                 text NOT NULL CHECK (phase IN ('prefill', 'decode')),
    unit_id               text NOT NULL,
    worker_id             text NOT NULL,
    rank                  integer NOT NULL,
    input_tokens          bigint,
    cached_tokens         bigint,
    context_tokens        bigint,
    max_new_tokens        bigint,
    cost                  double precision NOT NULL,
    rank_tokens           double precision NOT NULL,
    rank_requests         double precision NOT NULL,
    rank_cost             double precision NOT NULL,
    unit_mean_cost        double precision NOT NULL,
    unit_max_cost         double precision NOT NULL,
    telemetry_age_seconds double precision,
    policy                text NOT NULL,
    assigned_at           timestamptz NOT NULL,
    finished_at           timestamptz
);
CREATE INDEX assignments_by_request ON assignments (request_id, assigned_at);
CREATE INDEX assignments_by_time ON assignments (assigned_at);

-- Before 0003 named triggers, an operator's own table was stored as 'manual', which now means an operator-requested
-- rebalance; such tables are 'explicit'.
UPDATE placements SET trigger = 'explicit' WHERE trigger = 'manual' AND balancedness_after IS NULL;
