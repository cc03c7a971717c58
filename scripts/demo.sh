#!/usr/bin/env bash
# make demo: deploy-agent end to end on one machine (Debian 12, as root).
# Installs what it needs, builds, then runs scripts/demo.py: s3rver on loopback
# behind the SigV4-verifying proxy the tests use, a throwaway systemd booted in
# its own PID/mount/cgroup namespace running the shipped deploy-agent.service as
# a daemon and a tiny sample HTTP service as app.service. CI publishes three
# builds with awscli: v1 is deployed, v2 is an upgrade, v3 crashes at start and
# the agent rolls back to v2 by itself. The sandbox is powered off and s3rver
# stopped at the end, also on failure or Ctrl-C; KEEP_DEMO=1 keeps the files.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -t 1 ]; then B=$'\033[1m'; N=$'\033[0m'; else B=; N=; fi
say() { printf '\n%s== %s%s\n' "$B" "$*" "$N"; }

say "Installing dependencies (scripts/deps.sh)"
bash scripts/deps.sh

say "Building (make)"
make -s >/dev/null
echo "build/deploy-agent --version: $(build/deploy-agent --version)"

# Debian's Python: the demo uses the test suite's harness (botocore, awscli).
exec /usr/bin/python3 scripts/demo.py
