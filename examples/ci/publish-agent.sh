#!/usr/bin/env bash
# examples/ci/publish-agent.sh: how CI ships deploy-agent itself, the way the
# agent ships services. `make dist` builds both .debs of the commit
# (dist/<sha>/deploy-agent_<version>_{amd64,arm64}.deb, each with a .sha256)
# and each goes up with `deployctl publish`, named by the SHA:
#
#   s3://$BUCKET/${PREFIX}<sha>_amd64.deb   (+ .sha256)
#   s3://$BUCKET/${PREFIX}<sha>_arm64.deb   (+ .sha256)
#
# examples/ansible/deploy-agent.yml installs the one of a host's architecture.
#
# Inputs (environment):
#   BUCKET          S3 bucket, e.g. acme-artifacts
#   PREFIX          key prefix, default deploy-agent/
#   DEPLOY_CONFIG   optional deploy.ini holding only [s3] (a runner has no
#                   service); without it: AWS_REGION, AWS_ENDPOINT_URL_S3 and
#                   the usual AWS credentials (env, or the runner's EC2 role)
#   SKIP_BUILD      set to publish an existing dist/<sha>/ without `make dist`
set -euo pipefail

: "${BUCKET:?set BUCKET}"
PREFIX=${PREFIX:-deploy-agent/}
sha=$(git rev-parse HEAD)
if [[ -z "${SKIP_BUILD:-}" ]]; then
        make dist
fi
dir=dist/$sha
# What make dist wrote is what goes up (publish computes its own .sha256).
(cd "$dir" && sha256sum -c --quiet ./*.deb.sha256)

config=()
if [[ -n "${DEPLOY_CONFIG:-}" ]]; then
        config=(-c "$DEPLOY_CONFIG")
fi
shopt -s nullglob
debs=("$dir"/deploy-agent_*.deb)
[[ ${#debs[@]} -gt 0 ]] || { echo "no .deb in $dir" >&2; exit 1; }
for deb in "${debs[@]}"; do
        arch=${deb##*_}
        arch=${arch%.deb}
        # Exit codes: 0 published, 1 failed (retry the job), 2 usage or config error.
        deployctl "${config[@]}" publish --bucket "$BUCKET" --prefix "$PREFIX" \
                --sha "$sha" --suffix "_$arch.deb" "$deb"
done
