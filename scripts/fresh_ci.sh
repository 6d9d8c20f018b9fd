#!/usr/bin/env bash
# Run .ci/run the way CI does: a clean clone of HEAD with ../shared beside it.
# The clone (about 6.5 GB once .venv is installed) is removed afterwards,
# whatever the outcome; peak disk use of the run is printed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
d=$(mktemp -d)
trap 'rm -rf "$d"' EXIT
git clone -q . "$d/p"
cp -r ../shared "$d/shared"
peak=0
(
  cd "$d/p" && CI=true timeout 5400 bash .ci/run
) &
pid=$!
while kill -0 "$pid" 2>/dev/null; do
  used=$(du -sm "$d" 2>/dev/null | cut -f1)
  [ "${used:-0}" -gt "$peak" ] && peak=$used
  sleep 10
done
wait "$pid"
rc=$?
echo "fresh-clone CI: exit $rc, peak size of the clone ${peak} MB"
exit $rc
