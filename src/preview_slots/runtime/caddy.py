"""Caddy: render the Caddyfile (one site per slot), validate it, reload Caddy, then install it.

Order matters for case C-09: the new text is written to a temporary file beside the Caddyfile,
checked with ``caddy validate``, loaded into the running Caddy through its admin endpoint
(``caddy reload``), and only then renamed over the Caddyfile. If validation or the reload fails,
the previous file is still installed and still what Caddy serves, and the error names the cause.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from preview_slots.config import CaddySettings, Config
from preview_slots.errors import CommandFailed, ConfigError, RuntimeFailed
from preview_slots.runner import run
from preview_slots.runtime import files

CADDYFILE_MODE = 0o644


def site_address(config: Config, host: str) -> str:
    return f"http://{host}" if config.caddy.tls == "off" else host


def render_caddyfile(config: Config) -> str:
    cd = config.caddy
    where = str(config.path) if config.path else None
    if cd.admin.strip() == "off":
        raise ConfigError('"off" cannot work: provision reloads Caddy through its admin '
                          'endpoint; give an address such as "localhost:2019"', path=where,
                          key="caddy.admin")
    for index, directive in enumerate(cd.site_directives):
        if any(c in directive for c in "\n\r\x00"):
            raise ConfigError("must be one line", path=where,
                              key=f"caddy.site_directives[{index}]")
    lines = [
        "# Managed by preview-slots (`preview-slots provision`); edits here are overwritten.",
        "# One site per preview slot: host -> 127.0.0.1:port.",
        "{",
        f"\tadmin {cd.admin}",
        f"\thttp_port {cd.http_port}",
        f"\thttps_port {cd.https_port}",
    ]
    if cd.tls == "off":
        lines.append("\tauto_https off")
    lines.append("}")
    for slot in config.slots:
        lines += ["", f"# slot {slot.id}", f"{site_address(config, slot.host)} {{"]
        if cd.tls == "internal":
            lines.append("\ttls internal")
        lines += [f"\t{d}" for d in cd.site_directives]
        lines += [f"\treverse_proxy 127.0.0.1:{slot.port}", "}"]
    return "\n".join(lines) + "\n"


def _caddy_error(exc: CommandFailed) -> str:
    """The reason Caddy gave: its last ``Error:`` line or the message of its last error log."""
    reason = ""
    for line in exc.stderr_tail.splitlines():
        text = line.strip()
        if text.startswith("Error:"):
            reason = text.removeprefix("Error:").strip()
        elif text.startswith("{"):
            try:
                entry = json.loads(text)
            except ValueError:
                continue
            if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                reason = str(entry.get("msg", "")) + (
                    f": {entry['error']}" if entry.get("error") else "")
    return reason or exc.message


class Caddy:
    """The ``caddy`` program (``[caddy] binary``) and the running Caddy's admin endpoint."""

    def __init__(self, settings: CaddySettings, *, timeout: float = 60.0) -> None:
        self.settings = settings
        self.timeout = timeout

    def validate(self, content: str) -> None:
        """``caddy validate`` on ``content``; RuntimeFailed naming Caddy's reason."""
        with tempfile.TemporaryDirectory(prefix="preview-slots-caddy-") as folder:
            path = Path(folder) / "Caddyfile"
            path.write_text(content, encoding="utf-8")
            self._validate_file(path)

    def _validate_file(self, path: Path) -> None:
        try:
            run([self.settings.binary, "validate", "--config", str(path), "--adapter",
                 "caddyfile"], timeout=self.timeout, what="caddy validate")
        except CommandFailed as exc:
            if exc.returncode is None and "not found" in exc.message:
                raise RuntimeFailed(f"{exc.message}; nothing was installed") from exc
            raise RuntimeFailed(
                f"Caddy rejects the new Caddyfile: {_caddy_error(exc)}; nothing was installed "
                f"and {self.settings.caddyfile} is unchanged"
            ) from exc

    def reload(self, path: Path) -> None:
        """Load ``path`` into the running Caddy through its admin endpoint."""
        try:
            run([self.settings.binary, "reload", "--config", str(path), "--adapter", "caddyfile",
                 "--address", self.settings.admin], timeout=self.timeout, what="caddy reload")
        except CommandFailed as exc:
            raise RuntimeFailed(
                f"Caddy did not take the new Caddyfile through its admin endpoint "
                f"{self.settings.admin}: {_caddy_error(exc)} (is Caddy running, with its admin "
                f"API on at that address?); {self.settings.caddyfile} was left as it was and "
                "Caddy still serves the previous configuration"
            ) from exc

    def install(self, path: Path, content: str, *, mode: int = CADDYFILE_MODE) -> None:
        """Validate, reload from a temporary file beside ``path``, then rename it into place."""
        temp = files.write_temp(path, content, mode=mode)
        try:
            self._validate_file(temp)
            self.reload(temp)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        files.install_file(path, content, mode=mode, tmp=temp)
