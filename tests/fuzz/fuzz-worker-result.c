/* fuzz-worker-result.c: what the supervisor makes of a worker's datagrams
 * (a compromised worker is the threat): worker-pool.c's WorkerReading, then
 * the discover result that names the build to deploy
 * (pipeline_target_from_result). The input is the datagrams, one per line.
 * Every worker ends either with a result that says ok or with a reason it
 * failed, and a target that is taken names a valid sha and a key. */
#include <sys/wait.h>

#include "common/util.h"
#include "protocol/job.h"
#include "supervisor/pipeline-jobs.h"
#include "supervisor/worker-pool.h"
#include "fuzz.h"

static void check_outcome(const WorkerOutcome *o) {
        Target t = {};

        if (o->ok == (o->error != NULL) || (o->ok && !o->result))
                abort();
        if (!o->ok)
                return;
        if (pipeline_target_from_result(o->result, &t) >= 0 && t.sha && (!sha_is_valid(t.sha) || !t.key))
                abort();
        pipeline_target_done(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        WorkerReading rd = { .step = "discover" };
        WorkerOutcome o = {};
        const uint8_t *p = data, *end = data + size;

        if (size > 4 * WORKER_MESSAGE_MAX)
                return -1;
        while (p < end) {
                const uint8_t *nl = memchr(p, '\n', (size_t) (end - p));
                size_t n = nl ? (size_t) (nl - p) : (size_t) (end - p);
                uint64_t bytes = 0, total = 0;

                if (worker_reading_message(&rd, (const char *) p, n, &bytes, &total) == WORKER_MESSAGE_INVALID)
                        break; /* the pool kills the worker here */
                p += n + 1;
        }
        worker_reading_finish(&rd, p < end ? SIGKILL : 0, &o);
        check_outcome(&o);
        json_decref(o.result);
        free(o.error);
        worker_reading_done(&rd);
        return 0;
}
