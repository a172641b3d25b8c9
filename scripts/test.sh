#!/usr/bin/env bash
# The test command behind `make test`: lint, types, then every test under tests/: the production images in Podman
# (tests/images: two container sites, builds cached by scripts/images.sh), the lab tests against real Asterisk, units.
# Each runs alone: the image tests first, then the unit tests (throwaway servers on ports outside every block the lab
# and the images bind), then the lab tests. Beside the units the containers' one-key scenario once heard 629 ms of
# silence (bound 300); its press then wrote AstDB before the caller moved, which waits for AstDB's fsync, and no
# longer does. The units beside the images at nice 19 still failed one image run in five (session 9, its output
# not kept), so they stay apart until that is explained.
# One JUnit file for the three runs: reports/pytest.xml (each run's own beside it).
# pytest's exit code 5 (no tests collected) is a failure here for each of the three runs: every folder has tests,
# and a run that runs nothing proves nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
mkdir -p reports

"$VENV/bin/ruff" check telephony linkage_lab tests || exit 1
"$VENV/bin/mypy" || exit 1

rm -f reports/retried-scenarios.txt reports/pytest-*.xml reports/pytest-unit.log
# the port blocks of the lab and of the image sites, kept from ephemeral use before anything binds
"$VENV/bin/python" -c 'from linkage_lab.lab.lab import reserve_ports; reserve_ports(("45000-45999", "55000-55999"))'

"$VENV/bin/python" -m pytest -p no:cacheprovider --junitxml=reports/pytest-images.xml "$@" tests/images
images_rc=$?
"$VENV/bin/python" -m pytest -p no:cacheprovider --junitxml=reports/pytest-unit.xml "$@" tests/unit \
  > reports/pytest-unit.log 2>&1
unit_rc=$?
echo "test.sh: the unit tests (output in reports/pytest-unit.log):"
tail -n 30 reports/pytest-unit.log
"$VENV/bin/python" -m pytest -p no:cacheprovider --junitxml=reports/pytest-lab.xml "$@" tests/lab
lab_rc=$?

"$VENV/bin/python" - reports/pytest.xml reports/pytest-images.xml reports/pytest-lab.xml reports/pytest-unit.xml <<'EOF'
"""One JUnit file of the three runs, in the order a single run over tests/ had them (images, lab, unit)."""
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

out, parts = sys.argv[1], [p for p in sys.argv[2:] if Path(p).exists()]
merged = ET.Element("testsuite", name="pytest")
totals = {"errors": 0, "failures": 0, "skipped": 0, "tests": 0}
time = 0.0
for path in parts:
    for suite in ET.parse(path).getroot().iter("testsuite"):
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        time += float(suite.get("time", "0"))
        merged.get("timestamp") or merged.set("timestamp", suite.get("timestamp", ""))
        merged.get("hostname") or merged.set("hostname", suite.get("hostname", ""))
        merged.extend(list(suite))
for key, value in totals.items():
    merged.set(key, str(value))
merged.set("time", f"{time:.3f}")
root = ET.Element("testsuites", name="pytest tests")
root.append(merged)
ET.ElementTree(root).write(out, encoding="utf-8", xml_declaration=True)
print(f"test.sh: {totals['tests']} tests in {out} ({', '.join(parts)})")
EOF

if [ -s reports/retried-scenarios.txt ]; then
  echo "test.sh: these scenarios failed once and were retried:" >&2
  grep -E '^scenario ' reports/retried-scenarios.txt >&2
fi
echo "test.sh: exit codes: images $images_rc, unit $unit_rc, lab $lab_rc"
for rc in "$images_rc" "$unit_rc" "$lab_rc"; do
  if [ "$rc" -eq 5 ]; then
    echo "test.sh: a pytest run collected no tests (exit 5); failing" >&2
    exit 1
  fi
  if [ "$rc" -ne 0 ]; then
    exit "$rc"
  fi
done
exit 0
