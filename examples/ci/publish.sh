#!/usr/bin/env bash
# examples/ci/publish.sh: what a CI pipeline runs after each build of a
# service that deploy-agent deploys. It packs the build, signs it with
# minisign (when MINISIGN_SECRET_KEY is set) and publishes it with
# `deployctl publish`: the artifact, its .sha256, its .minisig, and then the
# pointer object, last, so agents in `select = pointer` mode only ever see a
# complete release.
#
# Inputs (environment):
#   BUCKET                 S3 bucket, e.g. acme-artifacts
#   PREFIX                 key prefix of the service, e.g. api/
#   BUILD_DIR              what to pack (the release tree), default ./dist
#   GIT_SHA                the commit built, default `git rev-parse HEAD`
#   POINTER_KEY            optional, e.g. api/LATEST (for select = pointer)
#   MINISIGN_SECRET_KEY    optional, path of an unencrypted minisign secret key
#                          (minisign -G -W); its public key goes into the
#                          agents' public_key
#   DEPLOY_CONFIG          optional deploy.ini whose [s3] section is used;
#                          without it: AWS_REGION, AWS_ENDPOINT_URL_S3 and the
#                          usual AWS credentials (env, or the runner's EC2 role)
set -euo pipefail

: "${BUCKET:?set BUCKET}"
: "${PREFIX:?set PREFIX}"
BUILD_DIR=${BUILD_DIR:-dist}
GIT_SHA=${GIT_SHA:-$(git rev-parse HEAD)}
SUFFIX=.tar.gz

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The file is named after the commit: minisign writes that name into the
# trusted comment (file:<sha>.tar.gz), which the agents check, so a signed
# old build cannot be replayed under a new name.
artifact="$work/$GIT_SHA$SUFFIX"
tar -C "$BUILD_DIR" --sort=name --owner=0 --group=0 --numeric-owner \
    -czf "$artifact" .

args=(publish --bucket "$BUCKET" --prefix "$PREFIX" --sha "$GIT_SHA" --suffix "$SUFFIX")
if [[ -n "${MINISIGN_SECRET_KEY:-}" ]]; then
        minisign -S -s "$MINISIGN_SECRET_KEY" -m "$artifact" </dev/null
        args+=(--minisig "$artifact.minisig")
fi
if [[ -n "${POINTER_KEY:-}" ]]; then
        args+=(--pointer "$POINTER_KEY")
fi

config=()
if [[ -n "${DEPLOY_CONFIG:-}" ]]; then
        config=(-c "$DEPLOY_CONFIG")
fi

# Exit codes: 0 published, 1 failed (retry the job), 2 usage or config error.
deployctl "${config[@]}" "${args[@]}" "$artifact"
