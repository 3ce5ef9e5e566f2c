"""Service runtime: env files, systemd template units or supervisord programs, Caddy routes."""
