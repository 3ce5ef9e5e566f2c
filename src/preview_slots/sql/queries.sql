-- Named queries of the control plane. `-- name: x` starts a query; parameters are %(name)s.

-- name: slot_table
SELECT slot_id, db_name FROM slots;

-- name: sync_slot
INSERT INTO slots (slot_id, db_name) VALUES (%(slot_id)s, %(db_name)s)
ON CONFLICT (slot_id) DO UPDATE SET db_name = EXCLUDED.db_name, updated_at = now()
WHERE slots.db_name <> EXCLUDED.db_name
  AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.slot_id = slots.slot_id
                  AND l.state IN ('resetting', 'ready'))
RETURNING slot_id;

-- name: expire_leases
-- Leases whose holder stopped heartbeating (or whose hold ran out) end here, by the DB's clock.
WITH expired AS (
    UPDATE leases SET state = 'expired', ended_at = now(), end_reason = 'ttl'
    WHERE state IN ('resetting', 'ready') AND expires_at < now()
    RETURNING lease_id, slot_id, run_id, generation, state
), abandoned AS (
    UPDATE preview_db_resets r
    SET reset_status = 'abandoned', finished_at = now(), updated_at = now(),
        details = r.details || jsonb_build_object('error', 'the resetting process stopped '
                  || 'heartbeating; its lease expired and the attempt was abandoned')
    FROM expired e WHERE r.lease_id = e.lease_id AND r.reset_status = 'running'
    RETURNING r.id
), released AS (
    UPDATE slots s SET last_released_at = now(), updated_at = now()
    FROM expired e WHERE s.slot_id = e.slot_id
    RETURNING s.slot_id
)
INSERT INTO lease_events (slot_id, run_id, lease_id, generation, event)
SELECT slot_id, run_id, lease_id, generation, 'expired' FROM expired
RETURNING slot_id;

-- name: abandon_orphan_resets
-- A 'running' row whose lease is no longer resetting (released or failed mid-reset) is abandoned.
UPDATE preview_db_resets r
SET reset_status = 'abandoned', finished_at = now(), updated_at = now(),
    details = r.details || jsonb_build_object('error', 'the lease ended before the reset finished')
FROM leases l
WHERE r.lease_id = l.lease_id AND r.reset_status = 'running' AND l.state <> 'resetting'
RETURNING r.id;

-- name: live_lease_for_run
SELECT l.*, s.db_name, s.generation AS slot_generation,
       now() AS db_now, l.expires_at - now() AS remaining
FROM leases l JOIN slots s USING (slot_id)
WHERE l.run_id = %(run_id)s AND l.state IN ('resetting', 'ready');

-- name: live_lease_for_slot
SELECT l.*, s.db_name, now() AS db_now FROM leases l JOIN slots s USING (slot_id)
WHERE l.slot_id = %(slot_id)s AND l.state IN ('resetting', 'ready');

-- name: last_slot_of_run
SELECT slot_id FROM leases WHERE run_id = %(run_id)s ORDER BY lease_id DESC LIMIT 1;

-- name: pick_free_slot
-- SKIP LOCKED: concurrent claimers never queue behind each other; the partial unique index on
-- leases is the backstop should two of them still pick the same slot.
SELECT s.slot_id, s.db_name, s.generation FROM slots s
WHERE s.slot_id = ANY(%(slot_ids)s) AND s.status = 'active'
  AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.slot_id = s.slot_id
                  AND l.state IN ('resetting', 'ready'))
ORDER BY (s.slot_id = %(prefer)s) DESC, s.last_released_at ASC NULLS FIRST, s.slot_id
LIMIT 1
FOR UPDATE OF s SKIP LOCKED;

-- name: lock_slot
SELECT slot_id, db_name, generation, status FROM slots WHERE slot_id = %(slot_id)s FOR UPDATE;

-- name: bump_generation
UPDATE slots SET generation = generation + 1, updated_at = now()
WHERE slot_id = %(slot_id)s RETURNING generation;

-- name: insert_lease
INSERT INTO leases (slot_id, run_id, generation, state, owner, strategy, seed_version,
                    snapshot_version, expires_at)
VALUES (%(slot_id)s, %(run_id)s, %(generation)s, 'resetting', %(owner)s, %(strategy)s,
        %(seed_version)s, %(snapshot_version)s, now() + make_interval(secs => %(ttl)s))
RETURNING *, now() AS db_now;

-- name: event
INSERT INTO lease_events (slot_id, run_id, lease_id, generation, event, details)
VALUES (%(slot_id)s, %(run_id)s, %(lease_id)s, %(generation)s, %(event)s, %(details)s);

-- name: heartbeat
-- Renew a lease during its reset. Zero rows back means the lease is gone or taken: stop.
UPDATE leases l SET heartbeat_at = now(), expires_at = now() + make_interval(secs => %(ttl)s)
FROM slots s
WHERE l.lease_id = %(lease_id)s AND l.generation = %(generation)s AND l.state = 'resetting'
  AND l.expires_at > now() AND s.slot_id = l.slot_id AND s.generation = l.generation
RETURNING l.expires_at;

-- name: fence_check
SELECT 1 FROM leases l JOIN slots s USING (slot_id)
WHERE l.lease_id = %(lease_id)s AND l.generation = %(generation)s AND l.state = %(state)s
  AND l.expires_at > now() AND s.generation = l.generation;

-- name: mark_ready
UPDATE leases l SET state = 'ready', heartbeat_at = now(),
       expires_at = now() + make_interval(secs => %(ttl)s), reset_id = %(reset_id)s
FROM slots s
WHERE l.lease_id = %(lease_id)s AND l.generation = %(generation)s AND l.state = 'resetting'
  AND l.expires_at > now() AND s.slot_id = l.slot_id AND s.generation = l.generation
RETURNING l.*, s.db_name, now() AS db_now;

-- name: end_lease
UPDATE leases SET state = %(state)s, ended_at = now(), end_reason = %(reason)s
WHERE lease_id = %(lease_id)s AND state IN ('resetting', 'ready')
RETURNING slot_id, run_id, generation;

-- name: slot_released
UPDATE slots SET last_released_at = now(), updated_at = now() WHERE slot_id = %(slot_id)s;

-- name: release_run
UPDATE leases SET state = 'released', ended_at = now(), end_reason = 'released'
WHERE run_id = %(run_id)s AND state IN ('resetting', 'ready')
RETURNING lease_id, slot_id, run_id, generation, strategy, seed_version, snapshot_version;

-- name: renew
-- Extends, never shortens: the lease lasts at least `ttl` from now (a CI step that renews with a
-- short value must not cut the hold its run asked for at allocation).
UPDATE leases SET heartbeat_at = now(),
    expires_at = greatest(expires_at, now() + make_interval(secs => %(ttl)s))
WHERE run_id = %(run_id)s AND state = 'ready' AND expires_at > now()
RETURNING *, now() AS db_now;

-- name: reset_failures_clear
UPDATE slots SET consecutive_failures = 0, updated_at = now() WHERE slot_id = %(slot_id)s;

-- name: reset_failures_bump
UPDATE slots SET consecutive_failures = consecutive_failures + 1,
       status = CASE WHEN consecutive_failures + 1 >= %(limit)s THEN 'quarantined'::slot_status
                     ELSE status END,
       updated_at = now()
WHERE slot_id = %(slot_id)s RETURNING status, consecutive_failures;

-- name: unquarantine
-- Returns a row only when the slot was quarantined (a second call changes nothing).
UPDATE slots SET status = 'active', consecutive_failures = 0, updated_at = now()
WHERE slot_id = %(slot_id)s AND status = 'quarantined' RETURNING slot_id;

-- name: insert_reset
INSERT INTO preview_db_resets (run_id, slot_id, db_name, strategy, seed_version,
                               snapshot_version, lease_id, generation, details)
VALUES (%(run_id)s, %(slot_id)s, %(db_name)s, %(strategy)s, %(seed_version)s,
        %(snapshot_version)s, %(lease_id)s, %(generation)s, %(details)s)
RETURNING id;

-- name: finish_reset
UPDATE preview_db_resets
SET reset_status = %(status)s, finished_at = now(), updated_at = now(),
    details = details || %(details)s
WHERE id = %(id)s AND reset_status = 'running'
RETURNING id;

-- name: status
SELECT s.slot_id, s.db_name, s.generation, s.status, s.consecutive_failures,
       s.last_released_at, l.run_id, l.state, l.granted_at, l.heartbeat_at, l.expires_at,
       l.owner, now() - l.granted_at AS age, l.expires_at - now() AS remaining,
       r.id AS reset_id, r.reset_status, r.strategy, r.seed_version, r.snapshot_version,
       r.finished_at AS reset_finished_at
FROM slots s
LEFT JOIN leases l ON l.slot_id = s.slot_id AND l.state IN ('resetting', 'ready')
LEFT JOIN LATERAL (SELECT * FROM preview_db_resets r WHERE r.slot_id = s.slot_id
                   ORDER BY r.id DESC LIMIT 1) r ON true
WHERE s.slot_id = ANY(%(slot_ids)s)
ORDER BY s.slot_id;

-- name: history
SELECT * FROM preview_db_resets
WHERE (%(slot_id)s::text IS NULL OR slot_id = %(slot_id)s)
  AND (%(run_id)s::text IS NULL OR run_id = %(run_id)s)
ORDER BY id DESC LIMIT %(limit)s;

-- name: last_reset
SELECT * FROM preview_db_resets WHERE slot_id = %(slot_id)s ORDER BY id DESC LIMIT 1;

-- name: holders
SELECT l.slot_id, l.run_id, l.state, l.expires_at, l.expires_at - now() AS remaining
FROM leases l WHERE l.state IN ('resetting', 'ready') ORDER BY l.slot_id;

-- name: my_turn
-- Fair waiting (migration 002): may this caller claim now? Only when fewer live waiters queued
-- before it (every live waiter, for a caller not in line) than there are free slots. A slot whose
-- lease ran out counts as free: the claim itself ends that lease.
SELECT (SELECT count(*) FROM waiters w WHERE w.expires_at > now()
          AND (%(waiter_id)s::bigint IS NULL OR w.waiter_id < %(waiter_id)s::bigint)
          AND (w.backend_pid IS NULL  -- one hashed look at the live sessions, not one per row
               OR w.backend_pid IN (SELECT pid FROM pg_stat_get_activity(NULL::integer))))
     < (SELECT count(*) FROM slots s
        WHERE s.slot_id = ANY(%(slot_ids)s) AND s.status = 'active'
          AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.slot_id = s.slot_id
                          AND l.state IN ('resetting', 'ready') AND l.expires_at > now()))
       AS ok;

-- name: enqueue_waiter
INSERT INTO waiters (run_id, owner, expires_at, backend_pid)
VALUES (%(run_id)s, %(owner)s, now() + make_interval(secs => %(ttl)s), pg_backend_pid())
RETURNING waiter_id;

-- name: waiter_heartbeat
-- Zero rows back: our place in line lapsed (we were paused past its expiry); queue again.
UPDATE waiters SET heartbeat_at = now(), expires_at = now() + make_interval(secs => %(ttl)s),
       backend_pid = pg_backend_pid()
WHERE waiter_id = %(waiter_id)s AND expires_at > now()
RETURNING waiter_id;

-- name: leave_queue
DELETE FROM waiters WHERE waiter_id = %(waiter_id)s RETURNING waiter_id;

-- name: purge_waiters
DELETE FROM waiters WHERE expires_at < now() - interval '1 minute';
