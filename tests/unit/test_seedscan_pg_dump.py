"""pg_dump puts comment headers before each COPY block: the data is still COPY data."""

from __future__ import annotations

from preview_slots.seedscan import forbidden_meta_commands

HEADER = "--\n-- Data for Name: {t}; Type: TABLE DATA; Schema: public; Owner: -\n--\n\n"


def test_copy_blocks_after_pg_dump_comment_headers() -> None:
    dump = (
        "SET client_encoding = 'UTF8';\n\n"
        + HEADER.format(t="a") + "COPY public.a (id, filler) FROM stdin;\n1\t\\N\n\\.\n\n\n"
        + HEADER.format(t="b") + "COPY public.b (id) FROM stdin;\n\\.\n\n\n"
        + "-- a trailing comment \\c not a command\nSELECT 1; -- done\n\\c elsewhere\n"
    )
    assert [(m.line, m.command) for m in forbidden_meta_commands(dump)] == [(22, "\\c")]
