"""Nothing outside the slot table (and the tool's own working databases) can be dropped/created."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preview_slots.config import RUN_ID_RE, Config, build_config, validate_run_id
from preview_slots.errors import NotAllowedDatabase, UsageError
from preview_slots.pgadmin import (
    Guard,
    SlotServer,
    build_name,
    old_name,
    spare_name,
    template_name,
)

CONFIG = build_config({}, None)
GUARD = Guard(CONFIG)
OWN = {build_name(CONFIG, s) for s in CONFIG.slots} | {old_name(CONFIG, s) for s in CONFIG.slots} \
    | {spare_name(CONFIG, s) for s in CONFIG.slots}
ALLOWED = {s.database for s in CONFIG.slots} | OWN


@pytest.mark.parametrize("name", ["postgres", "template0", "template1", "preview_slots",
                                  "app_preview_4", "app_preview_1;", 'app_preview_1"', "APP_PREVIEW_1",
                                  "app_preview_1 ", "\u0430pp_preview_1", "pslots_build_other",
                                  "pslots_tpl_X"])
def test_refuses_names_outside_the_table(name: str) -> None:
    with pytest.raises(NotAllowedDatabase) as err:
        GUARD.check(name)
    assert err.value.exit_code == 4


def test_admits_slot_and_own_databases() -> None:
    for name in ALLOWED | {template_name(CONFIG, "seed", "v1", "ab" * 32)}:
        assert GUARD.check(name) == name


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.text(max_size=70), st.from_regex(r"[a-z_][a-z0-9_]{0,70}", fullmatch=True),
                 st.sampled_from(sorted(ALLOWED)).map(lambda n: n + "x")))
def test_property_only_the_table_is_admitted(name: str) -> None:
    tpl = re.compile(r"^pslots_tpl_[a-z0-9_]{1,48}$")
    try:
        GUARD.check(name)
    except NotAllowedDatabase:
        assert name not in ALLOWED
    else:
        assert name in ALLOWED or tpl.fullmatch(name)


# -- generated slot tables: the guard follows the configuration, whatever it holds ------------------

SLOT_IDS = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
DB_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,20}", fullmatch=True).filter(
    lambda n: n not in {"postgres", "template0", "template1"} and not n.startswith("pslots_"))


@st.composite
def slot_tables(draw: st.DrawFn) -> Any:
    ids = draw(st.lists(SLOT_IDS, min_size=1, max_size=4, unique=True))
    dbs = draw(st.lists(DB_NAMES, min_size=len(ids), max_size=len(ids), unique=True))
    slots = [{"id": i, "database": d, "port": 3100 + n, "host": f"h{n}.example.com"}
             for n, (i, d) in enumerate(zip(ids, dbs, strict=True))]
    return build_config({"slots": slots}, None)


def own_names(config: Config) -> set[str]:
    return {f(config, s) for s in config.slots for f in (build_name, old_name, spare_name)}


@settings(max_examples=200, deadline=None)
@given(slot_tables(), st.data())
def test_property_generated_tables_admit_only_their_own_names(config: Config,
                                                              data: st.DataObject) -> None:
    """Slot ids and database names drawn at random: a name is admitted exactly when it is one of
    the table's databases, the tool's working name for one of its slots, or a template name."""
    guard = Guard(config)
    allowed = {s.database for s in config.slots} | own_names(config)
    near = st.sampled_from(sorted(allowed)).flatmap(lambda n: st.sampled_from(
        [n, n + "x", n[:-1], n.upper(), " " + n, n + ";", f'"{n}"', n.replace("_", "-")]))
    name = data.draw(st.one_of(near, DB_NAMES, st.text(max_size=40),
                               st.sampled_from(["postgres", "template0", "template1",
                                                config.control_plane.dbname])))
    try:
        guard.check(name)
    except NotAllowedDatabase:
        assert name not in allowed
    else:
        assert name in allowed or re.fullmatch(r"pslots_tpl_[a-z0-9_]{1,48}", name)


class Recorder:
    """Stands in for the admin connection and notes every statement it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def execute(self, query: Any, params: Any = None) -> Any:
        self.sent.append(str(query))
        return self

    description = None
    closed = False

    def fetchall(self) -> list[Any]:
        return []


OPERATIONS: list[Callable[[SlotServer, str], None]] = [
    lambda s, n: s.drop(n),
    lambda s, n: s.create(n),
    lambda s, n: s.create("app_preview_1_build", template=n),
    lambda s, n: s.rename(n, "app_preview_1"),
    lambda s, n: s.rename("app_preview_1", n),
    lambda s, n: s.set_comment(n, "x"),
    lambda s, n: s.set_template(n, is_template=True),
    lambda s, n: s.block_and_terminate(n),
    lambda s, n: s.swap_in(n, "app_preview_1", old_name(CONFIG, CONFIG.slots[0])),
]


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=40), DB_NAMES).filter(lambda n: n not in ALLOWED
                                                         and not n.startswith("pslots_tpl_")),
       st.sampled_from(range(len(OPERATIONS))))
def test_property_a_refused_name_sends_no_statement(name: str, op: int) -> None:
    """Whatever the operation, a name outside the table is refused before any SQL is sent."""
    server = object.__new__(SlotServer)
    server.config, server.guard = CONFIG, GUARD
    recorder = Recorder()
    server.conn = recorder  # type: ignore[assignment]
    with pytest.raises(NotAllowedDatabase):
        OPERATIONS[op](server, name)
    assert recorder.sent == []


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=140), st.from_regex(RUN_ID_RE, fullmatch=True)))
def test_property_run_ids_are_plain_tokens(run_id: str) -> None:
    """A run id that is accepted cannot start an option, quote, separate or span commands."""
    try:
        validate_run_id(run_id)
    except UsageError:
        return
    assert 1 <= len(run_id) <= 128 and not run_id.startswith(("-", ".", "/"))
    assert not set(run_id) & set(" \t\n\r'\";$`\\|&<>(){}*?!#%=,")
    assert run_id.isascii()
