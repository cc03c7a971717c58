#!/usr/bin/env bash
# Installs everything deploy-agent needs to build, test and run the demo on
# Debian 12, as root: the C toolchain and libraries, the test tools (pytest,
# botocore, awscli, minisign, systemd), Node.js when missing, and s3rver from
# package-lock.json (npm ci). Idempotent; quiet unless something fails.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
        echo "deps.sh: run as root (it uses apt-get)" >&2
        exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp /tmp/deploy-agent-deps.XXXXXX)
trap 'rm -f "$log"' EXIT
run() {
        if ! "$@" >"$log" 2>&1; then
                echo "deps.sh: '$*' failed:" >&2
                tail -n 40 "$log" >&2
                exit 1
        fi
}

packages=(
        build-essential clang libclang-rt-14-dev clang-tools cppcheck pkg-config git ca-certificates curl
        libcurl4-openssl-dev libarchive-dev libsystemd-dev libinih-dev libjansson-dev
        libsodium-dev libcmocka-dev libexpat1-dev
        python3 python3-pytest python3-botocore awscli minisign ansible-core
        systemd dbus
)
# Node.js: only when missing. A machine may have a newer nodejs from another
# repository, which Debian's npm package conflicts with.
if ! command -v node >/dev/null 2>&1; then
        packages+=(nodejs npm)
fi

echo "deps.sh: apt-get install (${#packages[@]} packages)"
run apt-get update -q
run apt-get install -y -q --no-install-recommends "${packages[@]}"

echo "deps.sh: npm ci (s3rver, pinned in package-lock.json)"
run npm ci --no-audit --no-fund --loglevel=error
echo "deps.sh: done (node $(node --version), $(/usr/bin/aws --version 2>&1 | cut -d' ' -f1))"
