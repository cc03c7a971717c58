/* fleet.h: the worker's side of the fleet (docs/design.md, "Fleet"): this
 * host's name, the circuit breaker's listing of bad/<sha>/, and the report
 * step that writes status/<host_id>.json and bad/<sha>/<host_id>. */
#pragma once

#include <stdbool.h>

#include "protocol/worker-job.h"
#include "protocol/worker-result.h"
#include "s3/s3.h"
#include "worker/runtime.h"

/* The EC2 instance id and zone from IMDSv2, else /etc/machine-id (zone
 * NULL). Before the privilege drop: /etc/machine-id is world-readable, but
 * nothing after the drop needs to open files. */
int fleet_resolve_identity(char **ret_host_id, char **ret_zone, char **ret_error);

/* One LIST of <prefix>bad/<sha>/: halted when an _abort marker is there or
 * at least max_failures host markers are; then *ret_halt says which hosts
 * and why (a GET of each of the first few markers). */
int fleet_breaker(S3Client *c, const char *bucket, const char *prefix, const char *sha, unsigned max_failures,
                  bool *ret_halted, char **ret_halt, char **ret_error);

int step_report(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error);
