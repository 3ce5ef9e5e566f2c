# Sourced by the scripts in this folder: sets $cli to the preview-slots command, preferring the
# project's own virtualenv, else the one on PATH. Works from any working directory.
here="$(cd -- "$(dirname -- "${BASH_SOURCE[1]}")" && pwd -P)"
cli="$here/../.venv/bin/preview-slots"
if [[ ! -x "$cli" ]]; then
  if ! cli="$(command -v preview-slots)"; then
    echo "$(basename -- "${BASH_SOURCE[1]}"): preview-slots is not installed (run 'make install' in" \
      "$(dirname -- "$here") or install the package)" >&2
    exit 2
  fi
fi
