-- What copying the weights for a placement was estimated to cost, and what its balance was predicted to save before
-- the next scheduled rebalance: {"transfers", "rounds", "bytes", "seconds", "gainSeconds"}. NULL for versions the
-- rebalancer did not plan (operators' tables, rollbacks) and for rows from before this migration.
ALTER TABLE placements ADD COLUMN transfer jsonb;
