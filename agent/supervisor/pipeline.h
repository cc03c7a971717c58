/* pipeline.h: one deploy of one service, as a chain of steps each run in
 * its own worker (docs/design.md, "Steps"): discover, fetch, unpack, activate,
 * restart with health check, and, when that fails after the swap, the
 * automatic rollback; then prune. The in-flight step is written to
 * state.json before it runs, so a restarted agent can finish or undo it. */
#pragma once

#include "supervisor/service.h"

typedef enum PipelineKind {
        PIPELINE_AUTO,                 /* discover; deploy the newest if new */
        PIPELINE_RECOVER,              /* finish an activation a crash cut */
        PIPELINE_DEPLOY,               /* an operator's deploy of a given sha */
        PIPELINE_ROLLBACK,             /* an operator's return to a release on disk */
        _PIPELINE_KIND_MAX,
} PipelineKind;

/* How a pipeline ended, for the service and for waiting clients. */
typedef struct PipelineResult {
        int r;                         /* < 0: failed */
        bool changed;                  /* current points elsewhere than before */
        const char *sha;               /* current at the end */
        const char *previous;          /* current at the start */
        const char *error;             /* why it failed */
} PipelineResult;

/* Start a pipeline for s (which must be idle); sha is the target of
 * PIPELINE_DEPLOY and PIPELINE_ROLLBACK; a rollback marks the release
 * current when it starts bad, for reason. Ends with service_pipeline_done(). */
int pipeline_start(Service *s, PipelineKind kind, const char *sha, const char *reason);

/* Stop the running worker; the pipeline then ends with an error. */
void pipeline_stop(Pipeline *p);

/* The name of the step running now ("fetch"), for status. */
const char *pipeline_step_name(const Pipeline *p);

/* true when state.json says a crash interrupted an activation that must
 * be finished or rolled back before anything else. */
bool pipeline_needs_recovery(const ServiceState *state);
