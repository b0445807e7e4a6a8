-- Inputs the dataflow could not use, kept with the reason (DESIGN.md §4: bad input is never
-- silently dropped). Keyed by where the input came from and the stage that refused it, so a
-- replay after a crash stores each dead letter once.
CREATE TABLE dead_letters (
    position VARCHAR(512) NOT NULL,
    stage VARCHAR(50) NOT NULL,
    source VARCHAR(255) NOT NULL,
    reason TEXT NOT NULL,
    raw TEXT NOT NULL,
    received_at TIMESTAMPTZ,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (position, stage)
);

CREATE INDEX ix_dead_letters_recorded_at ON dead_letters (recorded_at);
CREATE INDEX ix_dead_letters_stage_recorded_at ON dead_letters (stage, recorded_at);
