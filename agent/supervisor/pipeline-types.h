/* pipeline-types.h: what a pipeline is asked to do and how it ended, on
 * their own so that the service, the manager and the control socket can
 * name them without depending on the pipeline's code. */
#pragma once

#include <stdbool.h>

typedef enum PipelineKind {
        PIPELINE_AUTO,                 /* discover; deploy the newest if new */
        PIPELINE_RECOVER,              /* finish an activation a crash cut */
        PIPELINE_DEPLOY,               /* an operator's deploy of a given sha */
        PIPELINE_ROLLBACK,             /* an operator's return to a release on disk */
        _PIPELINE_KIND_MAX,
        _PIPELINE_KIND_NONE = -1,      /* no request waiting */
} PipelineKind;

/* How a pipeline ended, for the service and for waiting clients. */
typedef struct PipelineResult {
        int r;                         /* < 0: failed */
        bool changed;                  /* current points elsewhere than before */
        const char *sha;               /* current at the end */
        const char *previous;          /* current at the start */
        const char *error;             /* why it failed */
} PipelineResult;
