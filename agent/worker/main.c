/* main.c: main() of deploy-agent-worker, the program every pipeline
 * step runs in (`deploy-agent-worker --worker STEP`, job on fd 3). The
 * supervisor starts it; it is not meant to be run by hand. */
#include "common/util.h"
#include "worker/runtime.h"
#include "worker/steps.h"

typedef struct StepInfo {
        const char *name;
        step_fn fn;
        bool privileged;               /* runs as root (activate, prune) */
} StepInfo;

static const StepInfo steps[] = {
        { "discover", step_discover, false },
        { "fetch", step_fetch, false },
        { "unpack", step_unpack, false },
        { "activate", step_activate, true },
        { "restart", step_restart, true },
        { "prune", step_prune, true },
};

static step_fn step_lookup(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(steps); i++)
                if (streq(steps[i].name, name))
                        return steps[i].fn;
        return NULL;
}

int main(int argc, char **argv) {
        if (argc != 3 || !streq(argv[1], "--worker")) {
                fprintf(stderr, "deploy-agent-worker: run by deploy-agent only (--worker STEP, job on fd 3)\n");
                return 2;
        }
        return worker_main(argv[2], step_lookup(argv[2]));
}
