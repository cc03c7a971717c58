/* fuzz-worker-job.c: the worker's decoder of the job the supervisor sends.
 * The first byte picks the step the worker was started for, the rest is
 * the datagram, parsed as the worker parses it. What decodes must encode
 * back to exactly the message that came in (every field present, none
 * unknown, each of its type: nothing was skipped or filled in), and that
 * encoding must decode again. */
#include "protocol/worker-job.h"
#include "fuzz.h"

static void check_round_trip(json_t *msg, const WorkerJob *job) {
        WorkerJob again = {};
        json_t *encoded = NULL;
        char *error = NULL;

        if (worker_job_encode(job, &encoded) < 0) {
                fprintf(stderr, "a decoded job does not encode\n");
                abort();
        }
        if (!json_equal(msg, encoded)) {
                char *a = json_dumps(msg, JSON_SORT_KEYS), *b = json_dumps(encoded, JSON_SORT_KEYS);

                fprintf(stderr, "a decoded job encodes differently\n--- in:  %s\n--- out: %s\n", a, b);
                abort();
        }
        if (worker_job_decode(encoded, job->step, &again, &error) < 0) {
                fprintf(stderr, "a re-encoded job does not decode: %s\n", error);
                abort();
        }
        worker_job_done(&again);
        json_decref(encoded);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        WorkerJob job = {};
        WorkerStep step;
        char *error = NULL;
        json_t *msg;
        int r;

        if (size < 1 || size > WORKER_MESSAGE_MAX + 1)
                return -1;
        step = (WorkerStep) (data[0] % _WORKER_STEP_MAX);
        msg = json_loadb((const char *) data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
        if (!msg)
                return 0;
        r = worker_job_decode(msg, step, &job, &error);
        if (r < 0 && r != -ENOMEM && !error)
                abort();
        if (r >= 0) {
                if (error || job.step != step)
                        abort();
                check_round_trip(msg, &job);
        }
        worker_job_done(&job);
        free(error);
        json_decref(msg);
        return 0;
}
