#!/usr/bin/env bash
# The test command behind `make test`: lint, types, then every test under tests/: the production images in Podman
# (tests/images: two container sites, builds cached by scripts/images.sh), the lab tests against real Asterisk, units.
# pytest's exit code 5 (no tests collected) is a failure here: a suite that runs nothing proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
mkdir -p reports

"$VENV/bin/ruff" check telephony linkage_lab tests || exit 1
"$VENV/bin/mypy" || exit 1

rm -f reports/retried-scenarios.txt
"$VENV/bin/python" -m pytest -p no:cacheprovider --junitxml=reports/pytest.xml "$@" tests
rc=$?
if [ -s reports/retried-scenarios.txt ]; then
  echo "test.sh: these scenarios failed once and were retried:" >&2
  grep -E '^scenario ' reports/retried-scenarios.txt >&2
fi
if [ "$rc" -eq 5 ]; then
  echo "test.sh: pytest collected no tests; failing" >&2
  exit 1
fi
exit "$rc"
