-- The rebalancer's record of each placement: what it replaced, which ranks it left out (dead workers), what it was
-- predicted to do under the load it was solved from, and that load window. Rows from before this migration keep
-- NULLs: nothing was predicted for them.
ALTER TABLE placements
    ADD COLUMN based_on            integer,
    ADD COLUMN excluded_ranks      integer[] NOT NULL DEFAULT '{}',
    ADD COLUMN balancedness_before double precision,
    ADD COLUMN balancedness_after  double precision,
    ADD COLUMN improvement         double precision,
    ADD COLUMN moved               integer,
    -- {"windowSeconds", "spanSeconds", "reports", "totalTokens"}
    ADD COLUMN load_window         jsonb;
