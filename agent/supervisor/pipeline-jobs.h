/* pipeline-jobs.h: the job of each step, built from a service's config and
 * state (the messages themselves: protocol/worker-job.h). */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "protocol/worker-job.h"
#include "protocol/worker-result.h"
#include "supervisor/service.h"

typedef struct Target {
        char *sha;
        char *key;
        char *etag;
        uint64_t last_modified_usec;
        char *pointer_etag;            /* select = pointer: the pointer that named it */
} Target;

void pipeline_target_done(Target *t);
/* From a checked discover result: found -> sha/key/etag set; else sha NULL. */
int pipeline_target_from_result(const DiscoverResult *res, Target *t);

/* Each builds the step's message into *ret_msg and, in *ret_job, the job
 * as the worker will decode it (owned: worker_job_done()), to hold the
 * worker's result against. */
int pipeline_job_cleanup(Service *s, WorkerJob *ret_job, json_t **ret_msg);
int pipeline_job_discover(Service *s, WorkerJob *ret_job, json_t **ret_msg);
int pipeline_job_fetch(Service *s, const Target *t, WorkerJob *ret_job, json_t **ret_msg);
int pipeline_job_unpack(Service *s, char *sha, WorkerJob *ret_job, json_t **ret_msg);
/* check_unit: the worker checks, before the swap, that systemd can restart
 * the unit (a rollback swaps back whatever the unit's state). */
int pipeline_job_activate(Service *s, char *sha, bool check_unit, WorkerJob *ret_job, json_t **ret_msg);
int pipeline_job_restart(Service *s, char *sha, WorkerJob *ret_job, json_t **ret_msg);
int pipeline_job_prune(Service *s, WorkerJob *ret_job, json_t **ret_msg);
int pipeline_job_report(Service *s, WorkerJob *ret_job, json_t **ret_msg);
