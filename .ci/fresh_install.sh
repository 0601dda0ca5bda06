#!/usr/bin/env bash
# What a new user gets, proven on fresh virtual environments (pip reaches the
# package index), in a temporary folder that is removed at the end:
#   1. the README's first command, verbatim, on a copy of the checkout;
#   2. `pip install '.[celery,redis]'` alone (not editable): every transport,
#      backend and serializer the docs name imports, the examples run, and a
#      stock Celery worker works on coda:// (.ci/fresh_install_check.py).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/coda-fresh.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir "$work/src" "$work/run"
# the checkout as a clone has it (tracked and new files, nothing ignored)
git -C "$root" ls-files -z --cached --others --exclude-standard \
    | (cd "$root" && tar --null -T - -cf -) | tar -xf - -C "$work/src"
unset PYTHONPATH

python -m venv "$work/readme"
(cd "$work/src" && source "$work/readme/bin/activate" \
    && pip install -q -e . && python -m examples.ingest.main) >"$work/readme.log" 2>&1 \
    || { cat "$work/readme.log"; echo "fresh install: the README's first command failed"; exit 1; }

python -m venv "$work/extras"
"$work/extras/bin/pip" install -q "$work/src[celery,redis]" >"$work/extras.log" 2>&1 \
    || { cat "$work/extras.log"; echo "fresh install: pip install '.[celery,redis]' failed"; exit 1; }
cp -r "$work/src/examples" "$work/src/.ci/fresh_install_check.py" "$work/run/"
(cd "$work/run" && "$work/extras/bin/python" fresh_install_check.py)
