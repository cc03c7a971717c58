/* worker-protocol.c: the step names and the privilege table. */
#include "protocol/worker-protocol.h"

#include "common/util.h"

static const char *const step_names[_WORKER_STEP_MAX] = {
        [WORKER_STEP_CLEANUP] = "cleanup",
        [WORKER_STEP_DISCOVER] = "discover",
        [WORKER_STEP_FETCH] = "fetch",
        [WORKER_STEP_UNPACK] = "unpack",
        [WORKER_STEP_ACTIVATE] = "activate",
        [WORKER_STEP_RESTART] = "restart",
        [WORKER_STEP_PRUNE] = "prune",
        [WORKER_STEP_REPORT] = "report",
};

/* The one place that says which step keeps root. */
static const WorkerRunAs step_run_as[_WORKER_STEP_MAX] = {
        [WORKER_STEP_CLEANUP] = WORKER_RUN_AS_ROOT, /* removes what root's and the owner's steps left */
        [WORKER_STEP_DISCOVER] = WORKER_RUN_AS_WORKER_USER,
        [WORKER_STEP_FETCH] = WORKER_RUN_AS_WORKER_USER,
        [WORKER_STEP_UNPACK] = WORKER_RUN_AS_OWNER,
        [WORKER_STEP_ACTIVATE] = WORKER_RUN_AS_ROOT,
        [WORKER_STEP_RESTART] = WORKER_RUN_AS_ROOT,
        [WORKER_STEP_PRUNE] = WORKER_RUN_AS_ROOT,
        [WORKER_STEP_REPORT] = WORKER_RUN_AS_WORKER_USER,
};

const char *worker_step_to_string(WorkerStep s) {
        return (unsigned) s < _WORKER_STEP_MAX ? step_names[s] : NULL;
}

int worker_step_from_string(const char *s) {
        for (int i = 0; s && i < _WORKER_STEP_MAX; i++)
                if (streq(step_names[i], s))
                        return i;
        return -EINVAL;
}

WorkerRunAs worker_step_run_as(WorkerStep s) {
        /* an unknown step gets the least privilege there is */
        return (unsigned) s < _WORKER_STEP_MAX ? step_run_as[s] : WORKER_RUN_AS_WORKER_USER;
}
