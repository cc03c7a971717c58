#!/usr/bin/env bash
# `make dist`: the release of this commit, both architectures, named by the
# git SHA the way CI publishes it:
#
#   dist/<sha>/deploy-agent_<version>_amd64.deb  (+ .sha256)
#   dist/<sha>/deploy-agent_<version>_arm64.deb  (+ .sha256)
#
# Each .sha256 is sha256sum's format ("<hex>  <file name>"), so
# `cd dist/<sha> && sha256sum -c *.sha256` checks them. A dirty tree goes to
# dist/<sha>-dirty, never under a name that claims to be the commit.
# The .debs come from scripts/deb.sh (reproducible: the same commit gives the
# same bytes), the arm64 one cross-built (scripts/deps.sh --arm64 first).
set -euo pipefail
cd "$(dirname "$0")/.."

sha=$(git rev-parse HEAD)
if ! git diff-index --quiet HEAD --; then
        sha=$sha-dirty
fi
out=dist/$sha
mkdir -p "$out"
for arch in ${ARCHS:-amd64 arm64}; do
        deb=$(bash scripts/deb.sh "$arch" "$out")
        name=$(basename "$deb")
        # deb.sh reads HEAD itself: a commit made during the build would put
        # another commit's package under this SHA.
        if [[ $name != *".${sha:0:7}_$arch.deb" ]]; then
                rm -f "$deb"
                echo "dist.sh: HEAD moved during the build ($name is not ${sha:0:7})" >&2
                exit 1
        fi
        (cd "$out" && sha256sum "$name" >"$name.sha256.tmp" && mv "$name.sha256.tmp" "$name.sha256")
        echo "$deb"
done
