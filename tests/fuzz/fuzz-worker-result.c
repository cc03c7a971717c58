/* fuzz-worker-result.c: the supervisor's decoders of what a worker sends
 * (a compromised worker is the threat). The first byte picks the step the
 * worker runs, the rest is the datagram, parsed as worker-pool.c parses it.
 * Every message goes through worker-pool.c's WorkerReading; a reply that
 * says ok through worker_result_decode(), which must encode back to exactly the
 * message, and then worker_result_check() against a job of that step. */
#include "common/util.h"
#include "protocol/worker-result.h"
#include "supervisor/worker-pool.h"
#include "fuzz.h"

#define SHA "3f2c1ab9d0e4f5a6b7c8d9e0f1a2b3c4d5e6f708"

/* The job a reply is held against: what the supervisor asked for. */
static WorkerJob job_for(WorkerStep step) {
        WorkerJob j = { .step = step, .service = "api" };

        switch (step) {
        case WORKER_STEP_CLEANUP:
                j.cleanup = (CleanupJob) { .root = "/srv/api", .downloads_dir = "/d", .budget_usec = 1 };
                break;
        case WORKER_STEP_DISCOVER:
                j.discover = (DiscoverJob) { .bucket = "b", .prefix = "api/", .suffix = ".tar.gz",
                                             .select = SELECT_POINTER, .pointer_key = "api/LATEST" };
                break;
        case WORKER_STEP_FETCH:
                j.fetch = (FetchJob) { .bucket = "b", .key = "api/" SHA ".tar.gz", .sha = SHA, .suffix = ".tar.gz",
                                       .downloads_dir = "/d", .checksum = CHECKSUM_REQUIRED,
                                       .max_artifact_size = 1000 };
                break;
        case WORKER_STEP_UNPACK:
                j.unpack = (UnpackJob) { .downloads_dir = "/d", .sha = SHA, .suffix = ".tar.gz", .releases_dir = "/r",
                                         .max_unpacked_size = 42, .max_entries = 3 };
                break;
        case WORKER_STEP_ACTIVATE:
                j.activate = (ActivateJob) { .root = "/srv/api", .sha = SHA };
                break;
        case WORKER_STEP_RESTART:
                j.restart = (RestartJob) { .root = "/srv/api", .sha = SHA };
                break;
        case WORKER_STEP_REPORT:
                j.report = (ReportJob) { .bucket = "b", .fleet_prefix = "fleet/", .host_id = "i-0abc", .bad_sha = SHA };
                break;
        default:
                j.prune = (PruneJob) { .root = "/srv/api", .downloads_dir = "/d", .keep = 5 };
        }
        return j;
}

static void check_result(json_t *msg, WorkerStep step) {
        WorkerResult res = {};
        WorkerJob job = job_for(step);
        json_t *encoded = NULL;
        char *error = NULL;
        int r;

        r = worker_result_decode(msg, step, &res, &error);
        if (r < 0 && r != -ENOMEM && !error)
                abort();
        if (r >= 0) {
                if (error || res.step != step || worker_result_encode(&res, &encoded) < 0)
                        abort();
                if (!json_equal(msg, encoded)) {
                        char *a = json_dumps(msg, JSON_SORT_KEYS), *b = json_dumps(encoded, JSON_SORT_KEYS);

                        fprintf(stderr, "a decoded result encodes differently\n--- in:  %s\n--- out: %s\n", a, b);
                        abort();
                }
                r = worker_result_check(&job, &res, &error);
                if (r < 0 && r != -ENOMEM && !error)
                        abort();
        }
        worker_result_done(&res);
        json_decref(encoded);
        free(error);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        WorkerReading rd = { .step = "fuzz" };
        uint64_t bytes = 0, total = 0;
        WorkerStep step;

        if (size < 1 || size > WORKER_MESSAGE_MAX + 1)
                return -1;
        step = (WorkerStep) (data[0] % _WORKER_STEP_MAX);
        if (worker_reading_message(&rd, (const char *) data + 1, size - 1, &bytes, &total) == WORKER_MESSAGE_RESULT) {
                if (!rd.result)
                        abort();
                if (json_is_true(json_object_get(rd.result, "ok")))
                        check_result(rd.result, step);
        }
        worker_reading_done(&rd);
        return 0;
}
