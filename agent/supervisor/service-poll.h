/* service-poll.h: when a service runs which pipeline: the poll timer with
 * jitter and exponential backoff, crash recovery first, and the operator's
 * requests, started now or queued behind the running pipeline. */
#pragma once

#include <stdint.h>

#include "supervisor/pipeline-types.h"
#include "supervisor/service.h"

/* Arm the poll timer to fire after delay_usec. */
int service_schedule(Service *s, uint64_t delay_usec);

/* The delay to the next poll: poll_interval, or the backoff after
 * failures, spread by poll_jitter. */
uint64_t service_poll_delay(const Service *s);

/* When the poll timer fires next (CLOCK_MONOTONIC, usec), or 0 while a
 * pipeline runs (the timer is re-armed when it ends) or none is armed. */
uint64_t service_next_poll_usec(const Service *s);

/* Start an automatic pass (discover and deploy what is new) unless a
 * pipeline runs (-EBUSY), or the service is paused or pinned (0, nothing
 * started). A crash-interrupted activation is finished first, always. */
int service_poll(Service *s);

/* An operator's request (with a sha for deploy/rollback; a rollback marks
 * what is current when it starts bad, for reason): started now, or after
 * the running pipeline (or a crash recovery). -EBUSY when another request
 * already waits. */
int service_request(Service *s, PipelineKind kind, const char *sha, const char *reason);

/* The number of the pipeline the next service_request() will run as. */
unsigned service_request_seq(const Service *s);

/* After a pipeline ended: the waiting operator request, or the next poll.
 * A waiting request that cannot start ends through the pipeline_ended
 * callback at once, which may free s. */
void service_next(Service *s);
