-- preview-slots control plane, version 1.
-- Invariants live here, not in Python: at most one live lease per slot and per run (partial
-- unique indexes), generations only go up, states are enums, history is append-only.

CREATE TYPE lease_state AS ENUM ('resetting', 'ready', 'released', 'expired', 'failed');
CREATE TYPE reset_status AS ENUM ('running', 'succeeded', 'failed', 'abandoned');
CREATE TYPE slot_status AS ENUM ('active', 'quarantined');

CREATE TABLE slots (
    slot_id              text PRIMARY KEY CHECK (slot_id ~ '^[a-z][a-z0-9]*$'),
    db_name              text NOT NULL UNIQUE CHECK (db_name ~ '^[a-z_][a-z0-9_]*$'),
    generation           bigint NOT NULL DEFAULT 0 CHECK (generation >= 0),
    status               slot_status NOT NULL DEFAULT 'active',
    consecutive_failures integer NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    last_released_at     timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leases (
    lease_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slot_id          text NOT NULL REFERENCES slots (slot_id),
    run_id           text NOT NULL CHECK (run_id ~ '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$'),
    generation       bigint NOT NULL,
    state            lease_state NOT NULL,
    owner            text NOT NULL,
    strategy         text,
    seed_version     text,
    snapshot_version text,
    reset_id         bigint,
    granted_at       timestamptz NOT NULL DEFAULT now(),
    heartbeat_at     timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    end_reason       text,
    UNIQUE (slot_id, generation),
    CHECK ((state IN ('resetting', 'ready')) = (ended_at IS NULL))
);

-- The last line of defence: the database refuses a second live holder, whatever the code does.
CREATE UNIQUE INDEX leases_one_live_per_slot ON leases (slot_id) WHERE state IN ('resetting', 'ready');
CREATE UNIQUE INDEX leases_one_live_per_run ON leases (run_id) WHERE state IN ('resetting', 'ready');
CREATE INDEX leases_run ON leases (run_id, lease_id DESC);

CREATE TABLE preview_db_resets (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id           text NOT NULL,
    slot_id          text NOT NULL REFERENCES slots (slot_id),
    db_name          text NOT NULL,
    strategy         text NOT NULL CHECK (strategy IN ('seed', 'snapshot', 'empty')),
    seed_version     text,
    snapshot_version text,
    reset_status     reset_status NOT NULL DEFAULT 'running',
    lease_id         bigint REFERENCES leases (lease_id),
    generation       bigint,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    details          jsonb NOT NULL DEFAULT '{}'::jsonb,
    CHECK ((reset_status = 'running') = (finished_at IS NULL)),
    CHECK (strategy <> 'seed' OR seed_version IS NOT NULL),
    CHECK (strategy <> 'snapshot' OR snapshot_version IS NOT NULL)
);
CREATE INDEX preview_db_resets_slot ON preview_db_resets (slot_id, id DESC);
CREATE INDEX preview_db_resets_run ON preview_db_resets (run_id, id DESC);

-- Append-only history of every lease transition, for audits and the reliability checker.
CREATE TABLE lease_events (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    slot_id    text NOT NULL,
    run_id     text NOT NULL,
    lease_id   bigint,
    generation bigint,
    event      text NOT NULL,
    details    jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX lease_events_slot ON lease_events (slot_id, id);
