#!/usr/bin/env bash
# Builds deploy-agent_<version>_<arch>.deb from the git tree (what `make deb`
# runs): usage scripts/deb.sh [ARCH] [OUTDIR]. ARCH is a Debian architecture
# (amd64, arm64; another one than the machine's is cross-built).
#
# Snapshot version 0.3.0+git<YYYYMMDD>.<sha7>, from VERSION and the commit.
# Reproducible: the tree is exported with git archive (a dirty tree through
# `git stash create`) into a fresh directory, the changelog is dated by the
# commit, and SOURCE_DATE_EPOCH is the commit time, so two builds of one
# commit give byte-identical .debs wherever and whenever they run.
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${1:-$(dpkg --print-architecture)}
outdir=${2:-dist}
sha=$(git rev-parse HEAD)
tree=HEAD
suffix=
if ! git diff-index --quiet HEAD --; then
        tree=$(git stash create)
        suffix=-dirty
fi
epoch=$(git log -1 --format=%ct HEAD)
version=$(cat VERSION)+git$(date -u -d "@$epoch" +%Y%m%d).${sha:0:7}

work=$(mktemp -d "${TMPDIR:-/tmp}/deploy-agent-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
src=$work/deploy-agent-$version
mkdir "$src"
git archive "$tree" | tar -x -C "$src"
{
        echo "deploy-agent ($version) unstable; urgency=medium"
        echo
        echo "  * Snapshot of $sha$suffix."
        echo
        echo " -- $(sed -n 's/^Maintainer: //p' debian/control)  $(date -u -R -d "@$epoch")"
} >"$src/debian/changelog"

opts=(-b -us -uc --host-arch="$arch")
if [ "$arch" != "$(dpkg --print-architecture)" ]; then
        opts+=(--build-profiles=cross,nocheck)
fi
(cd "$src" && SOURCE_DATE_EPOCH=$epoch GIT_SHA=$sha$suffix dpkg-buildpackage "${opts[@]}") \
        >"$work/build.log" 2>&1 || { tail -n 60 "$work/build.log" >&2; exit 1; }
mkdir -p "$outdir"
cp "$work/deploy-agent_${version}_$arch.deb" "$outdir/"
echo "$outdir/deploy-agent_${version}_$arch.deb"
