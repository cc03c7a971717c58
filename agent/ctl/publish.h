/* publish.h: `deployctl publish`, what CI runs after each build: upload
 * <prefix><sha><suffix> with its .sha256 (and .minisig when given) in the
 * layout the agent expects, then the pointer object last, through the same
 * S3 client as the agent (streamed single PUT, up to 5 GiB). */
#pragma once

#include <stdio.h>

#include "config/config.h"
#include "ctl/fleet.h"

typedef struct PublishOptions {
        const char *bucket;
        const char *prefix;            /* may be "" */
        const char *sha;
        const char *suffix;
        const char *minisig_path;      /* or NULL */
        const char *pointer_key;       /* or NULL */
        const char *file;
        FleetWaves waves;              /* n_waves 0: a bare pointer, written as before */
} PublishOptions;

/* Check the options and the files, then upload: sidecars first (so that
 * the artifact is never listed without them), the artifact, the pointer
 * last. Progress lines go to out. Returns -errno with *ret_error set. */
int publish_run(const S3Config *cfg, const PublishOptions *o, FILE *out, char **ret_error);

/* `deployctl [-c FILE] publish ARGS...`: argv[0] is "publish". S3 settings
 * come from config_path's [s3]; with no -c and no default config file, from
 * the environment (AWS_REGION, AWS_ENDPOINT_URL_S3, credentials = auto).
 * Returns the exit code: 0 published, 1 failed, 2 usage or config error,
 * 7 (with --waves) the pointer changed since it was read: not written. */
int publish_main(const char *config_path, int argc, char **argv);
