/* fleet.h: the supervisor's side of the fleet (docs/design.md, "Fleet"):
 * this host's name once known, where it stands in the pointer's rollout,
 * the breaker's verdicts, and when the report step must write this host's
 * status and bad markers. Nothing here talks to S3: workers do. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "protocol/worker-job.h"
#include "protocol/worker-result.h"
#include "supervisor/fleet-types.h"

typedef struct Service Service;

/* [agent] host_id, else the one a worker resolved, else NULL. */
char *fleet_host_id(const Service *s);

/* The fleet part of a discover job (borrowing from s). */
FleetJob fleet_discover_job(const Service *s);

/* Keep what a discover worker learnt: the host id it resolved, the
 * rollout, a halted verdict (said in the journal once per build). */
int fleet_on_discovered(Service *s, const DiscoverResult *res);

bool fleet_is_halted(const Service *s, const char *sha);

/* Where this host stands in the pointer's rollout: "taken" when its build
 * is current, else "admitted", "waiting", "paused" or "halted" as the
 * last discover found; NULL when no rollout was seen. */
const char *fleet_rollout_status(const Service *s);

/* A pass ended with r, before its report: whether the status says
 * "failed", counted as the backoff counts failures (service-poll.c). */
void fleet_on_pass_end(Service *s, int r);

/* Whether a report step should run now: a marker to write, a status that
 * changed since the last one written, or the heartbeat due. */
bool fleet_report_wanted(Service *s);

/* The report job's fields (malloc'ed: status, bad_sha, bad_body; the
 * caller frees them after encoding). */
int fleet_report_fields(Service *s, char **ret_status, char **ret_bad_sha, char **ret_bad_body);

/* What the report step wrote: the marker is cleared only once written. */
void fleet_on_reported(Service *s, const ReportJob *job, const ReportResult *res);
