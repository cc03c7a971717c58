/* main.c: main() of deploy-agent-worker, the program every pipeline
 * step runs in (`deploy-agent-worker --worker STEP`, job on fd 3). The
 * supervisor starts it; it is not meant to be run by hand. */
#include "common/util.h"
#include "worker/runtime.h"
#include "worker/fleet.h"
#include "worker/steps.h"
#include "protocol/worker-protocol.h"

static const step_fn steps[_WORKER_STEP_MAX] = {
        [WORKER_STEP_CLEANUP] = step_cleanup,
        [WORKER_STEP_DISCOVER] = step_discover,
        [WORKER_STEP_FETCH] = step_fetch,
        [WORKER_STEP_UNPACK] = step_unpack,
        [WORKER_STEP_ACTIVATE] = step_activate,
        [WORKER_STEP_RESTART] = step_restart,
        [WORKER_STEP_PRUNE] = step_prune,
        [WORKER_STEP_REPORT] = step_report,
};

/* Who a step runs as is not here: the privilege table of
 * protocol/worker-protocol.h, from which the supervisor builds run_as. */
static step_fn step_lookup(const char *name) {
        int step = worker_step_from_string(name);

        return step < 0 ? NULL : steps[step];
}

int main(int argc, char **argv) {
        if (argc != 3 || !streq(argv[1], "--worker")) {
                fprintf(stderr, "deploy-agent-worker: run by deploy-agent only (--worker STEP, job on fd 3)\n");
                return 2;
        }
        return worker_main(argv[2], step_lookup(argv[2]));
}
