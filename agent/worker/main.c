/* main.c: main() of deploy-agent-worker, the program every pipeline
 * step runs in (`deploy-agent-worker --worker STEP`, job on fd 3). The
 * supervisor starts it; it is not meant to be run by hand. */
#include "common/util.h"
#include "worker/runtime.h"

int main(int argc, char **argv) {
        if (argc != 3 || !streq(argv[1], "--worker")) {
                fprintf(stderr, "deploy-agent-worker: run by deploy-agent only (--worker STEP, job on fd 3)\n");
                return 2;
        }
        return worker_main(argv[2]);
}
