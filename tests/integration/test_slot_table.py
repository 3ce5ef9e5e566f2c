"""The control plane's slot table follows the configuration: a new slot appears, a slot's new
database is taken over when nobody holds the slot, and an unchanged table is not written."""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import Env


def test_slot_table_follows_the_config(make_env: Callable[..., Env]) -> None:
    env = make_env(slots=2)
    first, second = (s.id for s in env.config.slots)
    assert env.cli("allocate", "--run-id", "holder", "--strategy", "seed",
                   "--seed-version", "v1").returncode == 0
    held = env.cp("SELECT slot_id FROM leases WHERE run_id = 'holder'")[0][0]
    free = second if held == first else first
    # xmax: the last transaction that updated or locked each row
    before = env.cp("SELECT slot_id, xmax::text, updated_at FROM slots ORDER BY 1")

    # nothing changed: commands neither write nor lock the slot table's rows (a lock would
    # make a concurrent claim's SKIP LOCKED pass over a free slot)
    assert env.cli("status").returncode == 0
    assert env.cli("allocate", "--run-id", "holder", "--strategy", "seed",
                   "--seed-version", "v1").returncode == 0  # its own lease back: no claim
    assert env.cli("allocate", "--run-id", "other", "--strategy", "seed",
                   "--seed-version", "v1", "--dry-run").returncode == 0
    assert env.cli("db", "reset-and-seed", "--slot", held, "--run-id", "holder",
                   "--strategy", "seed", "--seed-version", "v1", "--dry-run").returncode == 0
    assert env.cp("SELECT slot_id, xmax::text, updated_at FROM slots ORDER BY 1") == before

    # both slots get a new database name in the config; a third slot is added
    text = env.path.read_text()
    for slot in env.config.slots:
        text = text.replace(f'database = "{slot.database}"', f'database = "{slot.database}_b"')
    text += (f'[[slots]]\nid = "{env.tag}p3"\nhost = "{env.tag}p3.example.com"\nport = 3103\n'
             f'database = "{env.tag}_app_preview_3"\nstatic_root = "{env.tmp}/static/p3"\n')
    env.path.write_text(text)
    result = env.cli("db", "reset-and-seed", "--slot", free, "--run-id", "moved",
                     "--strategy", "seed", "--seed-version", "v1")
    assert result.returncode == 0, result.stderr
    rows = dict(env.cp("SELECT slot_id, db_name FROM slots"))
    assert rows[free].endswith("_b")  # nobody held it: it moves to its new database
    assert not rows[held].endswith("_b")  # held: it keeps the database its holder was given
    assert rows[f"{env.tag}p3"] == f"{env.tag}_app_preview_3"
    assert env.config.slot(free).database + "_b" in env.databases()
