"""Nothing outside the slot table (and the tool's own working databases) can be dropped/created."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from preview_slots.config import build_config
from preview_slots.errors import NotAllowedDatabase
from preview_slots.pgadmin import Guard, build_name, old_name, spare_name, template_name

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
