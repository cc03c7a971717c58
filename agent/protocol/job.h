/* job.h: typed access to the JSON jobs and results exchanged with workers.
 * The supervisor builds jobs from the config; a worker reads its fields with
 * these getters, which treat a missing or mistyped field as absent. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

/* The job goes down fd 3 of the worker as one SOCK_SEQPACKET datagram;
 * progress and the result come back the same way, each at most
 * WORKER_MESSAGE_MAX bytes. */
#define WORKER_FD 3
#define WORKER_MESSAGE_MAX (64 * 1024)

/* jansson provides json_decrefp (NULL-safe). */
#define _cleanup_json_ __attribute__((cleanup(json_decrefp)))

const char *job_string(const json_t *job, const char *key);          /* NULL if absent */
uint64_t job_uint64(const json_t *job, const char *key, uint64_t fallback);
bool job_bool(const json_t *job, const char *key, bool fallback);

/* [s3] settings travel in the job under "s3" (secrets included: fd 3 is a
 * private socketpair). The S3Config read back borrows the job's strings. */
json_t *job_s3_to_json(const S3Config *cfg);
int job_s3_from_json(const json_t *job, S3Config *ret);
