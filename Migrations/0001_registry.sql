-- The registry: deployment units and the GPU workers (ranks) that make them up.

CREATE TABLE units (
    id                text PRIMARY KEY,
    role              text NOT NULL CHECK (role IN ('prefill', 'decode')),
    nodes             integer NOT NULL CHECK (nodes > 0),
    gpus_per_node     integer NOT NULL CHECK (gpus_per_node > 0),
    moe_layers        integer NOT NULL CHECK (moe_layers > 0),
    routed_experts    integer NOT NULL CHECK (routed_experts > 0),
    expert_groups     integer NOT NULL CHECK (expert_groups > 0 AND routed_experts % expert_groups = 0),
    redundant_experts integer NOT NULL CHECK (redundant_experts >= 0),
    created_at        timestamptz NOT NULL,
    CHECK ((routed_experts + redundant_experts) % (nodes * gpus_per_node) = 0)
);

CREATE TABLE workers (
    id               text PRIMARY KEY,
    unit_id          text NOT NULL REFERENCES units (id) ON DELETE CASCADE,
    node             integer NOT NULL CHECK (node >= 0),
    gpu              integer NOT NULL CHECK (gpu >= 0),
    rank             integer NOT NULL CHECK (rank >= 0),
    kv_tokens        bigint NOT NULL CHECK (kv_tokens > 0),
    max_batch_tokens bigint NOT NULL CHECK (max_batch_tokens > 0),
    state            text NOT NULL CHECK (state IN ('active', 'cordoned', 'draining', 'dead')),
    registered_at    timestamptz NOT NULL,
    last_seen        timestamptz
);

-- One live worker per GPU; a dead one keeps its row (and history) but gives up the slot.
CREATE UNIQUE INDEX workers_live_slot ON workers (unit_id, node, gpu) WHERE state <> 'dead';
CREATE INDEX workers_by_unit ON workers (unit_id, rank);

-- Every state change of a worker, with why. No foreign key: the history outlives a deleted unit.
CREATE TABLE worker_events (
    id         bigserial PRIMARY KEY,
    worker_id  text NOT NULL,
    unit_id    text NOT NULL,
    from_state text,
    to_state   text NOT NULL,
    reason     text NOT NULL,
    at         timestamptz NOT NULL
);
CREATE INDEX worker_events_by_worker ON worker_events (worker_id, id);
