/* pipeline-jobs.h: the JSON job of each step, built from a service's
 * config and state (the contract with the workers: docs/design.md, "Worker protocol"). */
#pragma once

#include <jansson.h>
#include <stdint.h>

#include "supervisor/service.h"

typedef struct Target {
        char *sha;
        char *key;
        char *etag;
        uint64_t last_modified_usec;
        char *pointer_etag;            /* select = pointer: the pointer that named it */
} Target;

void pipeline_target_done(Target *t);
/* From a discover result: found -> sha/key/etag set; not found -> sha NULL. */
int pipeline_target_from_result(const json_t *res, Target *t);

json_t *pipeline_job_discover(const Service *s);
json_t *pipeline_job_fetch(const Service *s, const Target *t);
json_t *pipeline_job_unpack(const Service *s, const char *sha, const char *archive);
json_t *pipeline_job_activate(const Service *s, const char *sha);
json_t *pipeline_job_restart(const Service *s, const char *sha);
json_t *pipeline_job_prune(const Service *s);
