/* pipeline.h: one deploy of one service, as a chain of steps each run in
 * its own worker (DESIGN.md section 3): discover, fetch, unpack, activate,
 * restart with health check, and, when that fails after the swap, the
 * automatic rollback; then prune. The in-flight step is written to
 * state.json before it runs, so a restarted agent can finish or undo it. */
#pragma once

#include "service.h"

typedef enum PipelineKind {
        PIPELINE_AUTO,                 /* discover; deploy the newest if new */
        PIPELINE_RECOVER,              /* finish an activation a crash cut */
        _PIPELINE_KIND_MAX,
} PipelineKind;

/* Start a pipeline for s (which must be idle). Ends with
 * service_pipeline_done(). */
int pipeline_start(Service *s, PipelineKind kind);

/* Stop the running worker; the pipeline then ends with an error. */
void pipeline_stop(Pipeline *p);

/* The name of the step running now ("fetch"), for status. */
const char *pipeline_step_name(const Pipeline *p);

/* true when state.json says a crash interrupted an activation that must
 * be finished or rolled back before anything else. */
bool pipeline_needs_recovery(const ServiceState *state);
