#!/usr/bin/env bash
# Regenerate requirements.lock and requirements-dev.lock (exact versions with hashes) from pyproject.toml,
# keeping every version the project's venv already runs unless pyproject.toml's ranges exclude it.
# Usage: scripts/lock.sh  (or `make lock`); then run `make test` and commit the two files.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
UV=${UV:-$(command -v uv || true)}
if [ -z "$UV" ]; then
  python3 -m venv "$VENV/.uv-tool" >/dev/null
  "$VENV/.uv-tool/bin/pip" install --quiet uv
  UV="$VENV/.uv-tool/bin/uv"
fi
constraints=$(mktemp)
trap 'rm -f "$constraints"' EXIT
"$VENV/bin/pip" list --format=freeze --exclude-editable 2>/dev/null | grep -v '^tollway==' >"$constraints" || true
compile() {
  local output=$1
  shift
  "$UV" pip compile pyproject.toml "$@" -c "$constraints" --generate-hashes --python "$VENV/bin/python" \
    --no-header --quiet -o "$output"
  # The constraint file is temporary: keep its name out of the "via" notes.
  sed -i -e "\|^    #   -c $constraints\$|d" -e "s|# via -c $constraints|# via the venv's version|" "$output"
}
compile requirements.lock
compile requirements-dev.lock --extra dev
echo "wrote requirements.lock ($(grep -c '^[a-z]' requirements.lock) packages)," \
  "requirements-dev.lock ($(grep -c '^[a-z]' requirements-dev.lock) packages)"
