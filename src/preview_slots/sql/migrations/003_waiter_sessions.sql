-- preview-slots control plane, version 3: a waiter's place in line names its session.
-- A waiter whose process was killed loses its connection at once; its backend is gone from
-- pg_stat_activity, so it stops counting as ahead of anyone without waiting for its place to
-- lapse. (Behind a transaction pooler the pid is a pooled backend that stays alive: then the
-- heartbeat expiry alone decides, as before.)
ALTER TABLE waiters ADD COLUMN backend_pid integer;
