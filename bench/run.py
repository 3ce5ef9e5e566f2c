"""``make bench``: how fast a run gets a fresh, correct database, against the alternatives.

Starts its own PostgreSQL in a temporary folder, builds source databases of about 20, 150 and
750 MiB, and measures every way of getting a copy of each; then whole commands (allocate, 200
concurrent allocators, start-up, provision and health). Everything it creates is removed at the
end, also on Ctrl-C. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make the bench package importable
    sys.path.insert(0, str(ROOT))

from bench import report, system  # noqa: E402
from bench.common import BenchError, Cli, log  # noqa: E402
from bench.context import Bench  # noqa: E402
from bench.server import BenchServer  # noqa: E402
from bench.sizes import SizeResult, measure_size  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20,150,750",
                        help="database sizes in MiB, comma-separated (default 20,150,750)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions per figure (default 3)")
    parser.add_argument("--allocators", type=int, default=200,
                        help="concurrent allocate processes (default 200; 0 skips)")
    parser.add_argument("--hold", type=float, default=0.2,
                        help="seconds each concurrent allocator holds its slot (default 0.2)")
    parser.add_argument("--no-fsync", action="store_true",
                        help="measure with the embedded stack's settings (fsync off) instead of "
                        "a production server's")
    parser.add_argument("--skip-system", action="store_true",
                        help="only the per-size table (no allocate, concurrency, start-up, runtime)")
    args = parser.parse_args(argv)
    try:
        args.size_list = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes {args.sizes!r}: expected MiB numbers such as 20,150,750")
    if not args.size_list or min(args.size_list) < 1 or args.reps < 1:
        parser.error("--sizes needs at least one positive size and --reps at least 1")
    return args


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    root = Path(tempfile.mkdtemp(prefix="preview-slots-bench-"))
    server = BenchServer(root, durable=not args.no_fsync)
    bench = Bench(root=root, server=server, cli=Cli(root / "pycache"), reps=args.reps)
    sizes: dict[int, SizeResult] = {}
    sys_result = system.SystemResult()
    load_before = os.getloadavg()
    started = time.monotonic()
    try:
        log(f"working folder {root}; starting PostgreSQL")
        server.start()
        bench.scratch.mkdir(parents=True, exist_ok=True)
        version = server.query("SHOW server_version")[0][0]
        for mib in args.size_list:
            sizes[mib] = measure_size(bench, mib)
        if not args.skip_system:
            run_system(bench, sys_result, args)
        header = (f"preview-slots benchmark: {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} "
                  f"CPUs, {platform.python_implementation()} {platform.python_version()}, "
                  f"PostgreSQL {version} (fsync {'off' if args.no_fsync else 'on'}, "
                  "shared_buffers 128MB, max_wal_size 1GB), default clone strategy "
                  f"{bench.default_strategy}, {args.reps} repetitions; load average "
                  f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after; took "
                  f"{(time.monotonic() - started) / 60:.1f} min")
        lines = [header, ""]
        for mib in args.size_list:
            lines += [*report.size_table(sizes[mib]), ""]
        if not args.skip_system:
            lines += [*report.system_table(sys_result), ""]
        if sizes:
            lines += [*report.clone_strategy(sizes), ""]
        lines += [*report.targets(sizes, sys_result), "", report.LEGEND]
        print("\n".join(lines))
        return 0
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    except BenchError as exc:
        log(f"failed: {exc}")
        return 1
    finally:
        cleanup(bench)


def run_system(bench: Bench, out: system.SystemResult, args: argparse.Namespace) -> None:
    log("start-up time of preview-slots --help")
    system.measure_help(bench, out)
    if out.median("help") > 0.150:
        out.heavy_imports = system.heavy_imports(bench)
    log("allocate end to end with the example seed")
    system.measure_allocate(bench, out)
    if args.allocators > 0:
        system.measure_concurrency(bench, out, args.allocators, args.hold)
    missing = system.runtime_missing()
    if missing:
        out.skipped["provision/health"] = missing
        return
    try:
        system.measure_runtime(bench, out)
    except Exception as exc:  # another engineer's runtime: report why, never fake a figure
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
        out.skipped["provision/health"] = reason[:300]
        for key in ("provision", "health1", "health3", "alloc_services"):
            out.rows.pop(key, None)
    finally:
        system.stop_runtime(bench)


def cleanup(bench: Bench) -> None:
    for proc in bench.children:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for pid in bench.background_work():  # detached by our commands: a prewarm, a drop
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    system.stop_runtime(bench)
    try:
        bench.server.stop()
    except Exception as exc:  # still remove the folder
        log(f"could not stop PostgreSQL cleanly: {exc}")
    shutil.rmtree(bench.root, ignore_errors=True)
    log(f"removed {bench.root}")


if __name__ == "__main__":
    sys.exit(main())
