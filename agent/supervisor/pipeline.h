/* pipeline.h: one deploy of one service, as a chain of steps each run in
 * its own worker (docs/design.md, "Steps"): discover, fetch, unpack, activate,
 * restart with health check, and, when that fails after the swap, the
 * automatic rollback; then prune. The in-flight step is written to
 * state.json before it runs, so a restarted agent can finish or undo it. */
#pragma once

#include "supervisor/pipeline-types.h"
#include "supervisor/service.h"

/* Called once, when the pipeline has ended (s->pipeline is NULL again). */
typedef void (*pipeline_done_cb)(Service *s, const PipelineResult *res);

/* Start a pipeline for s (which must be idle); sha is the target of
 * PIPELINE_DEPLOY and PIPELINE_ROLLBACK; a rollback marks the release
 * current when it starts bad, for reason. Its steps run through
 * s->workers; it ends with done (maybe before this returns). */
int pipeline_start(Service *s, PipelineKind kind, const char *sha, const char *reason, pipeline_done_cb done);

/* Stop the running worker; the pipeline then ends with an error. */
void pipeline_stop(Pipeline *p);

/* The name of the step running now ("fetch"), for status. */
const char *pipeline_step_name(const Pipeline *p);

/* true when state.json says a crash interrupted an activation that must
 * be finished or rolled back before anything else. */
bool pipeline_needs_recovery(const ServiceState *state);

/* true when a deploy restarts a unit or checks health (the release at
 * current was proven to run), false when it only swaps the symlink. */
bool pipeline_checks_health(const ServiceConfig *cfg);

/* true while the release at current is not yet proven healthy: swapped
 * and being (or to be) checked, or being rolled back from. */
bool pipeline_current_unproven(const ServiceState *state);
