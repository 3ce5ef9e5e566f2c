from __future__ import annotations

import pytest

from preview_slots.seedscan import forbidden_meta_commands, scan, transaction_control


@pytest.mark.parametrize(("text", "found"), [
    ("\\c preview_slots\nCREATE TABLE x (i int);", [(1, "\\c")]),
    ("SELECT 1;\n\\! id > /tmp/x\n", [(2, "\\!")]),
    ("SELECT 1; \\connect postgres\n", [(1, "\\connect")]),
    ("SELECT 1 \\g /tmp/out\n", [(1, "\\g")]),
    ("\\o /tmp/x\n\\i other.sql\n\\copy t from '/etc/passwd'\n",
     [(1, "\\o"), (2, "\\i"), (3, "\\copy")]),
    ("\\set ON_ERROR_STOP 1\n\\echo hi\nSELECT 1;\n", []),
    ("SELECT 'a \\c b', E'x\\'y \\c', \"we\\ird\";\n", []),
    ("SELECT $$ \\c inside $$, $t$ \\! $t$;\n", []),
    ("-- a comment \\c x\n/* block \\! /* nested */ \\c */ SELECT 1;\n", []),
    ("COPY t (a, b) FROM stdin;\n\\N\t\\\\c\n1\t\\!x\n\\.\n\\c after\n", [(5, "\\c")]),
    ("copy public.t from STDIN with (format text);\n\\.\nSELECT 1;\n", []),
    ("SELECT 1; COPY t FROM stdin;\n\\N\n\\.\n", []),
])
def test_meta_commands(text: str, found: list[tuple[int, str]]) -> None:
    assert [(m.line, m.command) for m in forbidden_meta_commands(text)] == found


def test_pg_dump_plain_output_passes() -> None:
    dump = (
        "SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n"
        "CREATE TABLE public.t (id integer, note text);\n"
        "COPY public.t (id, note) FROM stdin;\n1\tone\\ttab\n2\t\\N\n\\.\n\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $_$\nBEGIN RETURN 1; END\n$_$;\n"
    )
    assert forbidden_meta_commands(dump) == []


@pytest.mark.parametrize(("text", "found"), [
    ("CREATE TABLE t (x int);\nCOMMIT;\nCREATE DATABASE evil;\n", [(2, "COMMIT")]),
    ("SELECT 1; END;\n", [(1, "END")]),
    ("abort;\nrollback;\n", [(1, "ABORT"), (2, "ROLLBACK")]),
    ("COMMIT PREPARED 'x';\nROLLBACK PREPARED 'y';\n", [(1, "COMMIT"), (2, "ROLLBACK")]),
    ("PREPARE TRANSACTION 'x';\n", [(1, "PREPARE TRANSACTION")]),
    ("SELECT 1;\nCOMMIT", [(2, "COMMIT")]),  # psql sends the unterminated rest at the end
    ("select 'x;'; commit\n;\n", [(1, "COMMIT")]),
    # what stays inside the transaction
    ("BEGIN;\nSAVEPOINT a;\nROLLBACK TO SAVEPOINT a;\nROLLBACK TO a;\nRELEASE a;\n", []),
    ("PREPARE q AS SELECT 1;\nEXECUTE q;\n", []),
    ("SELECT 1 AS commit, 'COMMIT;' AS t, \"end\";\n", []),
    ("SELECT 1; -- COMMIT;\n/* COMMIT; */ SELECT 2;\n", []),
    ("SELECT CASE WHEN true THEN 1 END;\n", []),
    ("DO $$ BEGIN COMMIT; END $$;\n", []),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $_$\nBEGIN\n  RETURN 1;\nEND\n$_$;\n",
     []),
    # SQL-standard bodies: psql keeps BEGIN ATOMIC ... END as one statement, CASE ... END inside
    ("CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n"
     "  SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nCOMMIT;\n",
     [(6, "COMMIT")]),
    ("CREATE OR REPLACE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END;\n"
     "END;\n", [(2, "END")]),
    ("COPY t FROM stdin;\nCOMMIT;\n\\.\nSELECT 1;\n", []),  # COPY data, not a statement
])
def test_transaction_control(text: str, found: list[tuple[int, str]]) -> None:
    assert [(m.line, m.command) for m in transaction_control(text)] == found


def test_statement_ranges_follow_psql() -> None:
    text = ("-- a header\n\nSELECT 1;\nINSERT INTO t\n  SELECT *\n  FROM u;\n"
            "/* lead */ SELECT\n2; SELECT 3;\nCOPY t FROM stdin;\n1\n\\.\nSELECT 4\n\n")
    found = scan(text)
    assert found.statements == [(3, 3), (4, 6), (7, 8), (8, 8), (9, 9), (12, 12)]
    assert found.statement_ending_at(6) == (4, 6)
    assert found.statement_ending_at(8) == (8, 8)  # two end on line 8: psql ran the later one
    assert found.statement_ending_at(2) is None
