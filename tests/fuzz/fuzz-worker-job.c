/* fuzz-worker-job.c: what a worker reads from the job the supervisor sends
 * (protocol/job.c: typed getters and the [s3] section). The datagram is
 * parsed as the worker parses it. An [s3] section that reads must write
 * back as one that reads to the same settings. */
#include "common/util.h"
#include "protocol/job.h"
#include "fuzz.h"

static void check_s3_round_trip(const S3Config *a) {
        json_t *job = json_pack("{s:o}", "s3", job_s3_to_json(a));
        S3Config b;

        if (!job || job_s3_from_json(job, &b) < 0)
                abort();
        if (!streq_ptr(a->region, b.region) || !streq_ptr(a->endpoint, b.endpoint) ||
            a->addressing != b.addressing || a->credentials != b.credentials ||
            !streq_ptr(a->access_key_id, b.access_key_id) || !streq_ptr(a->secret_access_key, b.secret_access_key) ||
            !streq_ptr(a->session_token, b.session_token))
                abort();
        json_decref(job);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const keys[] = { "service", "bucket", "prefix", "suffix", "key", "sha", "etag",
                                            "max_artifact_size", "resume", "step" };
        S3Config s3;
        json_t *job;

        if (size > WORKER_MESSAGE_MAX)
                return -1;
        job = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
        if (!job)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                const char *s = job_string(job, keys[i]);

                if (s)
                        (void) strlen(s);
                (void) job_uint64(job, keys[i], 0);
                (void) job_bool(job, keys[i], false);
        }
        if (job_s3_from_json(job, &s3) >= 0) {
                if (!s3.region)
                        abort();
                check_s3_round_trip(&s3);
        }
        json_decref(job);
        return 0;
}
