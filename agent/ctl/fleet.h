/* fleet.h: the operator's side of a staged rollout through S3: the pointer
 * `deployctl publish --waves` writes, and `deployctl fleet
 * pause|resume|abort|status SERVICE`. Every pointer edit is
 * read-modify-write: the GET keeps the pointer's ETag and the PUT carries
 * `If-Match: <etag>` (`If-None-Match: *` for a new pointer), so of two
 * operators editing at once one wins and the other is told, having written
 * nothing to the pointer (docs/design.md, "Fleet"). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "artifact/rollout.h"
#include "config/config.h"
#include "s3/s3.h"

#define FLEET_CONFLICT_MESSAGE "pointer changed since it was read (another operator?); nothing written"

/* Exit codes beyond deployctl's 0..6 (ctl-print.h). */
enum {
        FLEET_EXIT_CONFLICT = 7,       /* the pointer changed since it was read: nothing written */
        FLEET_EXIT_REFUSED = 8,        /* the pointer's state forbids it (abort with no previous) */
};

/* The rollout options of `publish --pointer KEY --waves ...`. */
typedef struct FleetWaves {
        unsigned waves[ROLLOUT_WAVES_MAX];     /* basis points, ascending, last 10000 */
        size_t n_waves;                        /* 0: no --waves */
        uint64_t wave_interval_usec;
        unsigned max_failures;                 /* 0: not given (the agents take 1) */
} FleetWaves;

/* "5%,25%,100%" (percent, up to two decimals, '%' optional) into basis
 * points: 1..16 values, strictly ascending, each 1..10000, the last 10000. */
int fleet_parse_waves(const char *s, unsigned waves[static ROLLOUT_WAVES_MAX], size_t *ret_n,
                      char **ret_error);

/* Point bucket/key at sha with the rollout policy w (may have no waves):
 * started = now_usec, previous = the sha the pointer named before (kept
 * when that is sha itself). Read-modify-write; a lost race is -ESTALE with
 * FLEET_CONFLICT_MESSAGE. ret_text (may be NULL): the pointer written. */
int fleet_publish_pointer(S3Client *c, const char *bucket, const char *key, const char *sha,
                          const FleetWaves *w, uint64_t now_usec, char **ret_text, char **ret_error);

/* -errno of a fleet operation -> deployctl's exit code. */
int fleet_exit_code(int r);

/* `deployctl [-c FILE] [--json] fleet VERB SERVICE ...`: argv[0] is "fleet".
 * The service's bucket, pointer_key and fleet_prefix and the S3 settings
 * come from the agent's configuration (config_path, default
 * CONFIG_DEFAULT_PATH). Returns the exit code. */
int fleet_main(const char *config_path, bool json, int argc, char **argv);
