"""The figures each reliability test measured, printed as one table at the end of the run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    test: str
    measure: str
    value: str
    expected: str
    ok: bool


FIGURES: list[Figure] = []


def record(test: str, measure: str, value: object, expected: str = "-", ok: bool = True) -> None:
    """Note one figure for the table (``verdict`` fails the test on any figure not ok)."""
    FIGURES.append(Figure(test, measure, str(value), expected, ok))


def verdict(test: str, *details: object) -> None:
    """Fail the test when any of its figures is not as expected, naming them (and ``details``)."""
    bad = [f for f in FIGURES if f.test == test and not f.ok]
    if bad:
        lines = [f"{f.measure}: {f.value} (expected {f.expected})" for f in bad]
        raise AssertionError("; ".join(lines + [str(d) for d in details if d]))


def render(figures: list[Figure]) -> str:
    headers = ("TEST", "MEASURE", "VALUE", "EXPECTED", "OK")
    rows = [(f.test, f.measure, f.value, f.expected, "yes" if f.ok else "NO") for f in figures]
    widths = [max(len(r[i]) for r in (headers, *rows)) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip(), line]
    previous = ""
    for row in rows:
        shown = ("" if row[0] == previous else row[0], *row[1:])
        previous = row[0]
        out.append("  ".join(c.ljust(w) for c, w in zip(shown, widths, strict=True)).rstrip())
    return "\n".join(out)
