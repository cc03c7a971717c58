#!/usr/bin/env bash
# Installs everything deploy-agent needs to build, test and run the demo on
# Debian 12, as root: the C toolchain and libraries, the test tools (pytest,
# pytest-xdist, botocore, awscli, minisign, systemd), Node.js when missing,
# and s3rver from package-lock.json (npm ci), and the Debian packaging tools
# (debhelper, lintian, mmdebstrap). Idempotent; quiet unless something fails.
#
# Fast when nothing is missing (`make test` runs it first, every time): one
# dpkg-query for the packages and a look at node_modules, no apt-get, no
# root needed. Only what is missing needs root (apt-get); run by another
# user, it names what is missing and the command to run as root.
#
# --arm64: also the arm64 cross toolchain, every lib*-dev below as :arm64
# through multiarch, and qemu-user to run the arm64 unit tests
# (`make deb ARCH=arm64`, `make unit-test-arm64`).
set -euo pipefail
cd "$(dirname "$0")/.."

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
        for p in "${packages[@]}"; do
                case "$p" in
                libclang-rt-*) ;;
                lib*-dev) packages+=("$p:arm64") ;;
                esac
        done
        # pkgconf:arm64 provides aarch64-linux-gnu-pkg-config.
        packages+=(crossbuild-essential-arm64 pkgconf:arm64 qemu-user)
fi

# The packages of the list that dpkg does not have installed. Native ones
# are listed by dpkg-query as NAME or NAME:<native arch>, foreign ones as
# NAME:ARCH, as in the list.
missing_packages() {
        local native p
        declare -A have=()
        native=$(dpkg --print-architecture 2>/dev/null || true)
        while read -r p status; do
                [ "$status" = ii ] && have[${p%:"$native"}]=1
        done < <(dpkg-query -W -f='${binary:Package} ${db:Status-Abbrev}\n' 2>/dev/null || true)
        for p in "${packages[@]}"; do
                [ -n "${have[$p]:-}" ] || echo "$p"
        done
}

# node_modules as package-lock.json pins it: npm ci leaves its own copy of
# the lock file there, newer than the one it installed from.
node_modules_current() {
        [ -x node_modules/.bin/s3rver ] && [ node_modules/.package-lock.json -nt package-lock.json ]
}

mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -eq 0 ] && node_modules_current; then
        exit 0
fi
if [ "${#missing[@]}" -gt 0 ] && [ "$(id -u)" -ne 0 ]; then
        echo "deps.sh: missing Debian packages: ${missing[*]}" >&2
        echo "deps.sh: install them as root (apt-get): sudo bash scripts/deps.sh${*:+ $*}" >&2
        exit 1
fi
# npm ci needs no root, only a checkout this user may write to.
if [ "${#missing[@]}" -eq 0 ] && [ ! -w . ]; then
        echo "deps.sh: node_modules is missing or older than package-lock.json, and $(id -un) cannot write to $PWD" >&2
        echo "deps.sh: run it as the owner of the checkout or as root: sudo bash scripts/deps.sh${*:+ $*}" >&2
        exit 1
fi

if [ "${#missing[@]}" -gt 0 ]; then
        echo "deps.sh: apt-get install (${#missing[@]} of ${#packages[@]} packages missing)"
        [ "$arm64" = 0 ] || run dpkg --add-architecture arm64
        run apt-get update -q
        run apt-get install -y -q --no-install-recommends "${packages[@]}"
fi

echo "deps.sh: npm ci (s3rver, pinned in package-lock.json)"
run npm ci --no-audit --no-fund --loglevel=error
echo "deps.sh: done (node $(node --version), $(/usr/bin/aws --version 2>&1 | cut -d' ' -f1))"
