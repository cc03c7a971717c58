/* fleet-types.h: what a service keeps about the fleet (docs/design.md,
 * "Fleet"), on its own so that service.h can hold it without depending on
 * fleet.c, which works on services. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "protocol/worker-job.h"

#define FLEET_HALTED_MAX 8

typedef struct FleetHalted {
        char sha[SHA_MAX_LEN + 1];
        char *halt;                    /* hosts and reasons */
} FleetHalted;

typedef struct ServiceFleet {
        char *host_id;                 /* [agent] host_id, or what a worker resolved; NULL until known */
        char *zone;
        char *rollout_sha;             /* the build the pointer names; NULL: no rollout seen */
        const char *rollout_status;    /* "admitted" "waiting" "halted" "paused" (fleet_rollout_status()) */
        uint64_t rollout_wave;
        char *rollout_message;         /* "waiting for wave 1 (...)", or NULL */
        FleetHalted halted[FLEET_HALTED_MAX]; /* verdicts are final per sha: never listed again */
        size_t n_halted;
        bool failed;                   /* the last pass failed (last_error stays until a deploy) */
        char *reported;                /* the last status written, without its time */
        uint64_t reported_usec;        /* monotonic, 0: never */
} ServiceFleet;

/* Inline, so that the service frees it without depending on fleet.c. */
static inline void fleet_done(ServiceFleet *f) {
        free(f->host_id);
        free(f->zone);
        free(f->rollout_sha);
        free(f->rollout_message);
        for (size_t i = 0; i < f->n_halted; i++)
                free(f->halted[i].halt);
        free(f->reported);
        *f = (ServiceFleet) {};
}
