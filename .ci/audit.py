"""``make audit``: pip-audit over the pinned versions (constraints.txt), with an honest count.

pip-audit looks every package up on PyPI's JSON API; a package it cannot look up is
skipped with a reason, and "No known vulnerabilities found" is printed all the same, even
when nothing at all could be looked up (a mirror without the per-version endpoint, no
network). This prints how many packages were really checked.

Exit status: 0 when every package was checked and none is vulnerable; 1 when a package has
a known vulnerability; 3 when some or all could not be checked (nothing found among the
rest); 2 when pip-audit itself could not run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    # The exact pins (constraints.txt), read as they are: "-r requirements.txt" had pip-audit
    # resolve the ranges afresh in a scratch venv, so it checked the newest releases allowed,
    # not the versions installed.
    command = [str(Path(sys.executable).with_name("pip-audit")), "-r", str(ROOT / "constraints.txt"), "--no-deps", "--disable-pip",
               "-f", "json", "--progress-spinner", "off"]
    run = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        last = (run.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"pip-audit could not run: {last}")
        return 2
    dependencies = report.get("dependencies", [])
    skipped = [d for d in dependencies if "skip_reason" in d]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    for dependency in vulnerable:
        for vuln in dependency["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
            print(f"{dependency['name']} {dependency['version']}: {vuln['id']} (fixed in {fixed})")
    checked = len(dependencies) - len(skipped)
    print(f"pip-audit checked {checked} of {len(dependencies)} packages against PyPI's advisory database: "
          f"{len(vulnerable)} with known vulnerabilities.")
    if skipped:
        reasons = Counter(d["skip_reason"].split(":")[0] for d in skipped)
        print(f"{len(skipped)} could not be looked up: " + "; ".join(f"{reason} ({count})" for reason, count in reasons.most_common(3)))
    if vulnerable:
        return 1
    return 3 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
