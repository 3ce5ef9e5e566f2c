-- preview-slots control plane, version 2: waiting in line.
-- `allocate --wait` callers queue here in arrival order (waiter_id). A caller may claim a slot only
-- when fewer live waiters are ahead of it than there are free slots: with one free slot, only the
-- oldest waiter; a caller not in line yet counts every live waiter as ahead of it. So a stream of
-- newcomers cannot starve someone who has been waiting. Waiters heartbeat while they wait; one whose
-- process died stops doing so and drops out of line once its expires_at passes (DB clock).

CREATE TABLE waiters (
    waiter_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       text NOT NULL CHECK (run_id ~ '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$'),
    owner        text NOT NULL,
    enqueued_at  timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL
);
CREATE INDEX waiters_expires ON waiters (expires_at);
