"""Start a slot's application with exactly its env file, like systemd's ``EnvironmentFile=``.

``python -m preview_slots.runtime.envexec ENV_FILE -- PROGRAM [ARG...]``

supervisord runs this as each slot's command. It reads ``ENV_FILE`` with systemd's syntax, builds
a clean environment (a fixed ``PATH``, the locale, the identity variables the manager set, then
the file), and ``exec``s the program in place, keeping the PID supervisord watches. Without a
readable env file it refuses to start (exit 78) rather than run the application on defaults or
on whatever ``DATABASE_URL`` the manager's own environment holds (case C-11).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from preview_slots.runtime.envfile import parse

EX_USAGE = 64
EX_CONFIG = 78
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PASSED_THROUGH = ("LANG", "LC_ALL", "TZ", "HOME", "USER", "LOGNAME", "SHELL")


def base_environment(inherited: Mapping[str, str]) -> dict[str, str]:
    """What survives from the manager's environment: identity and locale, and supervisord's own
    ``SUPERVISOR_*`` markers; nothing an application could mistake for its configuration."""
    env = {"PATH": DEFAULT_PATH}
    for key, value in inherited.items():
        if key in PASSED_THROUGH or key.startswith("SUPERVISOR_"):
            env[key] = value
    env.setdefault("LANG", "C.UTF-8")
    return env


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: python -m preview_slots.runtime.envexec ENV_FILE -- PROGRAM "
                         "[ARG...]\n")
        return EX_USAGE
    env_file, program = args[0], args[2:]
    try:
        with open(env_file, encoding="utf-8") as fh:
            values = parse(fh.read())
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        sys.stderr.write(f"envexec: refusing to start {program[0]}: cannot read its env file "
                         f"{env_file}: {reason} (run `preview-slots provision`)\n")
        return EX_CONFIG
    env = base_environment(os.environ)
    env.update(values)
    try:
        os.execvpe(program[0], program, env)
    except OSError as exc:
        sys.stderr.write(f"envexec: cannot run {program[0]}: {exc.strerror}\n")
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
