-- High availability: one leader among the replicas on this database, by a lease with an epoch that only grows.
-- One row. A replica takes the lease when it has expired (by the database's clock, so replicas' clocks need not
-- agree), raising the epoch; every write that matters checks, in its own transaction, that the epoch it was made
-- under is still the current one and unexpired, so an old leader that was paused or cut off cannot write.
CREATE TABLE leadership (
    singleton  boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch      bigint NOT NULL CHECK (epoch >= 0),
    holder     text NOT NULL,
    holder_url text NOT NULL,
    expires_at timestamptz NOT NULL
);
INSERT INTO leadership (epoch, holder, holder_url, expires_at) VALUES (0, '', '', '1970-01-01 00:00:00+00');

-- The replicas seen lately: each writes its row while it runs (for GET /v1/cluster, and to refuse a second
-- process started with an id already in use).
CREATE TABLE replicas (
    id         text PRIMARY KEY,
    url        text NOT NULL,
    instance   uuid NOT NULL,
    started_at timestamptz NOT NULL,
    seen_at    timestamptz NOT NULL
);
