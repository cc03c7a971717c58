#!/usr/bin/env bash
# Installs everything deploy-agent needs to build, test and run the demo on
# Debian 12, as root: the C toolchain and libraries, the test tools (pytest,
# pytest-xdist, botocore, awscli, minisign, systemd), Node.js when missing,
# and s3rver from package-lock.json (npm ci), and the Debian packaging tools
# (debhelper, lintian, mmdebstrap). Idempotent; quiet unless something fails.
#
# --arm64: also the arm64 cross toolchain, every lib*-dev below as :arm64
# through multiarch, and qemu-user to run the arm64 unit tests
# (`make deb ARCH=arm64`, `make unit-test-arm64`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
        echo "deps.sh: run as root (it uses apt-get)" >&2
        exit 1
fi

arm64=0
for arg in "$@"; do
        case "$arg" in
        --arm64) arm64=1 ;;
        *) echo "deps.sh: unknown argument '$arg' (known: --arm64)" >&2; exit 2 ;;
        esac
done

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
        libcurl4-openssl-dev libarchive-dev libsystemd-dev libjansson-dev
        libsodium-dev libcmocka-dev libexpat1-dev libseccomp-dev
        python3 python3-pytest python3-pytest-xdist python3-botocore awscli minisign ansible-core
        systemd dbus
        debhelper lintian mmdebstrap
)
# Node.js: only when missing. A machine may have a newer nodejs from another
# repository, which Debian's npm package conflicts with.
if ! command -v node >/dev/null 2>&1; then
        packages+=(nodejs npm)
fi

# The arm64 -dev packages are the native ones with :arm64, so a library
# added to the list above is cross-built too (libclang-rt is compiler-side).
if [ "$arm64" = 1 ]; then
        run dpkg --add-architecture arm64
        for p in "${packages[@]}"; do
                case "$p" in
                libclang-rt-*) ;;
                lib*-dev) packages+=("$p:arm64") ;;
                esac
        done
        # pkgconf:arm64 provides aarch64-linux-gnu-pkg-config.
        packages+=(crossbuild-essential-arm64 pkgconf:arm64 qemu-user)
fi

echo "deps.sh: apt-get install (${#packages[@]} packages)"
run apt-get update -q
run apt-get install -y -q --no-install-recommends "${packages[@]}"

echo "deps.sh: npm ci (s3rver, pinned in package-lock.json)"
run npm ci --no-audit --no-fund --loglevel=error
echo "deps.sh: done (node $(node --version), $(/usr/bin/aws --version 2>&1 | cut -d' ' -f1))"
