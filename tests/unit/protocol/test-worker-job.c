/* test-worker-job.c: every job survives encode and decode unchanged, and
 * the decoder refuses each kind of malformed job with the field named. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "protocol/worker-job.h"

#define SHA "3f2c1ab9d0e4f5a6b7c8d9e0f1a2b3c4d5e6f708"
#define SHA2 "9ab0c1d"

static S3Config s3(void) {
        return (S3Config) {
                .region = "eu-west-1", .endpoint = "http://127.0.0.1:9000", .addressing = S3_ADDRESSING_PATH,
                .credentials = CREDENTIALS_STATIC, .access_key_id = "AKID", .secret_access_key = "secret",
        };
}

static WorkerJob header(WorkerStep step, bool user) {
        return (WorkerJob) {
                .step = step, .service = "api", .log_level = 7,
                .limits = { .cpu_sec = 600, .as_bytes = user ? UINT64_C(1) << 30 : 0, .fsize_bytes = 4096, .nofile = 256 },
                .run_as = { .set = user, .uid = 65534, .gid = 65533 },
        };
}

static WorkerJob sample(WorkerStep step) {
        WorkerJob j = header(step, worker_step_run_as(step) != WORKER_RUN_AS_ROOT);

        switch (step) {
        case WORKER_STEP_CLEANUP:
                j.cleanup = (CleanupJob) { .root = "/srv/api", .downloads_dir = "/var/lib/d/api/downloads",
                                           .budget_usec = 5 * USEC_PER_SEC };
                break;
        case WORKER_STEP_DISCOVER:
                j.discover = (DiscoverJob) { .s3 = s3(), .bucket = "b", .prefix = "api/", .suffix = ".tar.gz",
                                             .select = SELECT_POINTER, .pointer_key = "api/LATEST",
                                             .pointer_etag = "\"abc\"",
                                             .fleet = { .prefix = "fleet/", .host_id = "i-0abc", .canary = true,
                                                        .settled = { SHA, SHA2 }, .n_settled = 2 } };
                break;
        case WORKER_STEP_FETCH:
                j.fetch = (FetchJob) { .s3 = s3(), .bucket = "b", .key = "api/" SHA ".tar.gz", .sha = SHA,
                                       .suffix = ".tar.gz", .etag = NULL, .downloads_dir = "/var/lib/d/api/downloads",
                                       .checksum = CHECKSUM_OFF, .public_key = "RWQ key",
                                       .max_artifact_size = UINT64_C(2) << 30, .resume = true };
                break;
        case WORKER_STEP_UNPACK:
                j.unpack = (UnpackJob) { .downloads_dir = "/var/lib/d/api/downloads", .sha = SHA, .suffix = ".zip",
                                         .download_uid = 65534, .releases_dir = "/srv/api/releases",
                                         .max_unpacked_size = UINT64_C(8) << 30, .max_entries = 200000 };
                break;
        case WORKER_STEP_ACTIVATE:
                j.activate = (ActivateJob) { .root = "/srv/api", .sha = SHA, .pre_activate = "make check",
                                             .post_activate = NULL, .hook_timeout_usec = 600 * USEC_PER_SEC,
                                             .unit = "api.service" };
                break;
        case WORKER_STEP_RESTART:
                j.restart = (RestartJob) { .root = "/srv/api", .sha = SHA, .unit = "api.service",
                                           .restart_mode = RESTART_TRY_RESTART, .health_url = "http://x/health",
                                           .health_command = NULL, .health_settle_usec = 5 * USEC_PER_SEC,
                                           .health_timeout_usec = 60 * USEC_PER_SEC };
                break;
        case WORKER_STEP_PRUNE:
                j.prune = (PruneJob) { .root = "/srv/api", .downloads_dir = "/var/lib/d/api/downloads", .keep = 5,
                                       .protect = { SHA, SHA2 }, .n_protect = 2 };
                break;
        case WORKER_STEP_REPORT:
                j.report = (ReportJob) { .s3 = s3(), .bucket = "b", .fleet_prefix = "fleet/", .host_id = "i-0abc",
                                         .status = "{\"host_id\":\"i-0abc\"}", .bad_sha = SHA,
                                         .bad_body = "{\"reason\":\"health\"}" };
                break;
        default:
                fail();
        }
        return j;
}

static json_t *encoded(WorkerStep step) {
        WorkerJob j = sample(step);
        json_t *msg = NULL;

        assert_int_equal(worker_job_encode(&j, &msg), 0);
        return msg;
}

static void test_round_trip_every_step(void **state) {
        for (int step = 0; step < _WORKER_STEP_MAX; step++) {
                json_auto_t *m1 = encoded((WorkerStep) step), *m2 = NULL;
                _cleanup_free_ char *error = NULL;
                WorkerJob j = {};

                assert_int_equal(worker_job_decode(m1, (WorkerStep) step, &j, &error), 0);
                assert_null(error);
                assert_int_equal(worker_job_encode(&j, &m2), 0);
                assert_true(json_equal(m1, m2));
                assert_int_equal(j.step, step);
                assert_string_equal(j.service, "api");
                assert_int_equal(j.limits.cpu_sec, 600);
                worker_job_done(&j);
        }
}

static void test_round_trip_fields(void **state) {
        json_auto_t *fetch = encoded(WORKER_STEP_FETCH), *unpack = encoded(WORKER_STEP_UNPACK);
        json_auto_t *prune = encoded(WORKER_STEP_PRUNE), *restart = encoded(WORKER_STEP_RESTART);
        json_auto_t *cleanup = encoded(WORKER_STEP_CLEANUP), *activate = encoded(WORKER_STEP_ACTIVATE);
        WorkerJob j = {};

        /* the unit checked before the swap */
        assert_int_equal(worker_job_decode(activate, WORKER_STEP_ACTIVATE, &j, NULL), 0);
        assert_string_equal(j.activate.unit, "api.service");
        worker_job_done(&j);

        assert_int_equal(worker_job_decode(fetch, WORKER_STEP_FETCH, &j, NULL), 0);
        assert_true(j.run_as.set);
        assert_int_equal(j.run_as.uid, 65534);
        assert_int_equal(j.run_as.gid, 65533);
        assert_int_equal(j.fetch.checksum, CHECKSUM_OFF);  /* typed, not a string to re-parse */
        assert_null(j.fetch.etag);
        assert_string_equal(j.fetch.s3.secret_access_key, "secret");
        assert_int_equal(j.fetch.s3.addressing, S3_ADDRESSING_PATH);
        assert_null(j.fetch.s3.session_token);
        assert_true(j.fetch.resume);
        worker_job_done(&j);

        assert_int_equal(worker_job_decode(unpack, WORKER_STEP_UNPACK, &j, NULL), 0);
        assert_int_equal(j.unpack.download_uid, 65534);
        assert_string_equal(j.unpack.suffix, ".zip");
        worker_job_done(&j);

        assert_int_equal(worker_job_decode(prune, WORKER_STEP_PRUNE, &j, NULL), 0);
        assert_false(j.run_as.set);
        assert_int_equal(j.prune.n_protect, 2);
        assert_string_equal(j.prune.protect[1], SHA2);
        worker_job_done(&j);

        assert_int_equal(worker_job_decode(restart, WORKER_STEP_RESTART, &j, NULL), 0);
        assert_int_equal(j.restart.restart_mode, RESTART_TRY_RESTART);
        assert_null(j.restart.health_command);
        worker_job_done(&j);

        assert_int_equal(worker_job_decode(cleanup, WORKER_STEP_CLEANUP, &j, NULL), 0);
        assert_false(j.run_as.set);
        assert_string_equal(j.cleanup.root, "/srv/api");
        assert_string_equal(j.cleanup.downloads_dir, "/var/lib/d/api/downloads");
        assert_int_equal(j.cleanup.budget_usec, 5 * USEC_PER_SEC);
        worker_job_done(&j);
}

/* Decode msg as step and expect -EBADMSG with a message containing want. */
static void expect_refused(json_t *msg, WorkerStep step, const char *want) {
        _cleanup_free_ char *error = NULL;
        WorkerJob j = {};

        assert_int_equal(worker_job_decode(msg, step, &j, &error), -EBADMSG);
        assert_non_null(error);
        if (!strstr(error, want))
                fail_msg("error \"%s\" does not say \"%s\"", error, want);
        assert_null(j.service); /* nothing handed out on failure */
}

static json_t *body(json_t *msg, WorkerStep step) {
        return json_object_get(msg, worker_step_to_string(step));
}

static void test_missing_fields(void **state) {
        json_auto_t *m = encoded(WORKER_STEP_FETCH);

        json_object_del(body(m, WORKER_STEP_FETCH), "sha");
        expect_refused(m, WORKER_STEP_FETCH, "field \"fetch.sha\": missing");
        json_decref(m);

        m = encoded(WORKER_STEP_FETCH);
        json_object_del(json_object_get(body(m, WORKER_STEP_FETCH), "s3"), "region");
        expect_refused(m, WORKER_STEP_FETCH, "field \"fetch.s3.region\": missing");
        json_decref(m);

        /* an optional value is null, never absent */
        m = encoded(WORKER_STEP_FETCH);
        json_object_del(body(m, WORKER_STEP_FETCH), "etag");
        expect_refused(m, WORKER_STEP_FETCH, "field \"fetch.etag\": missing");
        json_decref(m);

        m = encoded(WORKER_STEP_UNPACK);
        json_object_del(m, "limits");
        expect_refused(m, WORKER_STEP_UNPACK, "field \"limits\": missing");
        json_decref(m);

        m = encoded(WORKER_STEP_PRUNE);
        json_object_del(m, "prune");
        expect_refused(m, WORKER_STEP_PRUNE, "field \"prune\": missing");
        json_decref(m);

        m = encoded(WORKER_STEP_CLEANUP);
        json_object_del(body(m, WORKER_STEP_CLEANUP), "budget_usec");
        expect_refused(m, WORKER_STEP_CLEANUP, "field \"cleanup.budget_usec\": missing");
}

static void test_unknown_fields(void **state) {
        json_auto_t *m = encoded(WORKER_STEP_UNPACK);

        json_object_set_new(body(m, WORKER_STEP_UNPACK), "archive", json_string("/etc/shadow"));
        expect_refused(m, WORKER_STEP_UNPACK, "unknown field \"unpack.archive\"");
        json_decref(m);

        m = encoded(WORKER_STEP_DISCOVER);
        json_object_set_new(m, "extra", json_true());
        expect_refused(m, WORKER_STEP_DISCOVER, "unknown field \"extra\"");
        json_decref(m);

        m = encoded(WORKER_STEP_FETCH);
        json_object_set_new(json_object_get(m, "limits"), "stack", json_integer(1));
        expect_refused(m, WORKER_STEP_FETCH, "unknown field \"limits.stack\"");
        json_decref(m);

        m = encoded(WORKER_STEP_FETCH);
        json_object_set_new(json_object_get(body(m, WORKER_STEP_FETCH), "s3"), "", json_null());
        expect_refused(m, WORKER_STEP_FETCH, "unknown field \"fetch.s3.\"");
}

static void test_mistyped_fields(void **state) {
        json_auto_t *m = encoded(WORKER_STEP_FETCH);

        json_object_set_new(body(m, WORKER_STEP_FETCH), "max_artifact_size", json_string("2G"));
        expect_refused(m, WORKER_STEP_FETCH, "field \"fetch.max_artifact_size\": expected an integer");
        json_decref(m);

        m = encoded(WORKER_STEP_FETCH);
        json_object_set_new(body(m, WORKER_STEP_FETCH), "resume", json_integer(1));
        expect_refused(m, WORKER_STEP_FETCH, "field \"fetch.resume\": expected true or false");
        json_decref(m);

        m = encoded(WORKER_STEP_ACTIVATE);
        json_object_set_new(body(m, WORKER_STEP_ACTIVATE), "root", json_integer(0));
        expect_refused(m, WORKER_STEP_ACTIVATE, "field \"activate.root\": expected a string");
        json_decref(m);

        m = encoded(WORKER_STEP_ACTIVATE);
        json_object_set_new(body(m, WORKER_STEP_ACTIVATE), "hook_timeout_usec", json_real(1.5));
        expect_refused(m, WORKER_STEP_ACTIVATE, "field \"activate.hook_timeout_usec\": expected an integer");
        json_decref(m);

        m = encoded(WORKER_STEP_UNPACK);
        json_object_set_new(m, "run_as", json_string("nobody"));
        expect_refused(m, WORKER_STEP_UNPACK, "field \"run_as\": not a JSON object");
        json_decref(m);

        m = encoded(WORKER_STEP_PRUNE);
        json_object_set_new(body(m, WORKER_STEP_PRUNE), "protect", json_string(SHA));
        expect_refused(m, WORKER_STEP_PRUNE, "field \"prune.protect\": expected an array");
        json_decref(m);

        m = json_array();
        expect_refused(m, WORKER_STEP_PRUNE, "message: not a JSON object");
}

static void test_out_of_range_and_bad_values(void **state) {
        static const struct {
                WorkerStep step;
                const char *key;           /* in the step's body; NULL: top level */
                const char *value;         /* JSON */
                const char *want;
        } cases[] = {
                { WORKER_STEP_FETCH, "checksum", "\"maybe\"", "field \"fetch.checksum\": \"maybe\" is not one" },
                { WORKER_STEP_DISCOVER, "select", "\"oldest\"", "field \"discover.select\": \"oldest\"" },
                { WORKER_STEP_RESTART, "restart_mode", "\"RESTART\"", "field \"restart.restart_mode\"" },
                { WORKER_STEP_FETCH, "sha", "\"../../etc\"", "field \"fetch.sha\": not a sha" },
                { WORKER_STEP_UNPACK, "sha", "\"3F2C1AB\"", "field \"unpack.sha\": not a sha" },
                { WORKER_STEP_UNPACK, "suffix", "\"/../../shadow\"", "field \"unpack.suffix\": contains '/'" },
                { WORKER_STEP_UNPACK, "downloads_dir", "\"downloads\"", "field \"unpack.downloads_dir\": not an absolute" },
                { WORKER_STEP_UNPACK, "download_uid", "-1", "field \"unpack.download_uid\": -1 is out of range" },
                { WORKER_STEP_UNPACK, "download_uid", "4294967295", "field \"unpack.download_uid\"" },
                { WORKER_STEP_PRUNE, "protect", "[\"x\"]", "field \"prune.protect\": element 0 is not a sha" },
                { WORKER_STEP_PRUNE, "protect", "[\"" SHA2 "\",\"" SHA2 "\",\"" SHA2 "\",\"" SHA2 "\",\"" SHA2 "\"]",
                  "field \"prune.protect\": more than 4" },
                { WORKER_STEP_ACTIVATE, "sha", "\"" SHA2 "\\u0000x\"", "field \"activate.sha\": contains a NUL" },
                { WORKER_STEP_DISCOVER, "pointer_key", "null", "field \"discover.pointer_key\": select = pointer" },
                { WORKER_STEP_DISCOVER, NULL, "\"fetch\"", "field \"step\": this worker runs discover" },
                { WORKER_STEP_REPORT, "host_id", "\"_abort\"", "field \"report.host_id\": not a host id" },
                { WORKER_STEP_REPORT, "bad_sha", "\"../x\"", "field \"report.bad_sha\": not a sha" },
                { WORKER_STEP_REPORT, "bad_body", "null", "field \"report.bad_body\": a marker needs both" },
                { WORKER_STEP_CLEANUP, "root", "\"srv/api\"", "field \"cleanup.root\": not an absolute path" },
                { WORKER_STEP_CLEANUP, "downloads_dir", "\"../d\"", "field \"cleanup.downloads_dir\": not an absolute" },
                { WORKER_STEP_CLEANUP, "budget_usec", "0", "field \"cleanup.budget_usec\": 0 would remove nothing" },
                { WORKER_STEP_CLEANUP, "budget_usec", "-1", "field \"cleanup.budget_usec\": -1 is out of range" },
                { WORKER_STEP_CLEANUP, "budget_usec", "1.5", "field \"cleanup.budget_usec\": expected an integer" },
                { WORKER_STEP_CLEANUP, "removed", "[]", "unknown field \"cleanup.removed\"" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                json_auto_t *m = encoded(cases[i].step);
                json_t *v = json_loads(cases[i].value, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

                assert_non_null(v);
                json_object_set_new(cases[i].key ? body(m, cases[i].step) : m, cases[i].key ?: "step", v);
                expect_refused(m, cases[i].step, cases[i].want);
        }
}

static void test_privilege_table_is_enforced(void **state) {
        json_auto_t *m = encoded(WORKER_STEP_ACTIVATE);
        json_auto_t *u = encoded(WORKER_STEP_FETCH);

        /* a root step never carries a user: the table says root */
        json_object_set_new(m, "run_as", json_pack("{s:i,s:i}", "uid", 65534, "gid", 65534));
        expect_refused(m, WORKER_STEP_ACTIVATE, "field \"run_as\": activate runs as root");

        json_object_set_new(json_object_get(u, "run_as"), "uid", json_integer(0));
        expect_refused(u, WORKER_STEP_FETCH, "field \"run_as.uid\": a worker never switches to root");

        assert_int_equal(worker_step_run_as(WORKER_STEP_DISCOVER), WORKER_RUN_AS_WORKER_USER);
        assert_int_equal(worker_step_run_as(WORKER_STEP_FETCH), WORKER_RUN_AS_WORKER_USER);
        assert_int_equal(worker_step_run_as(WORKER_STEP_UNPACK), WORKER_RUN_AS_OWNER);
        assert_int_equal(worker_step_run_as(WORKER_STEP_ACTIVATE), WORKER_RUN_AS_ROOT);
        assert_int_equal(worker_step_run_as(WORKER_STEP_RESTART), WORKER_RUN_AS_ROOT);
        assert_int_equal(worker_step_run_as(WORKER_STEP_PRUNE), WORKER_RUN_AS_ROOT);
        assert_int_equal(worker_step_run_as(WORKER_STEP_CLEANUP), WORKER_RUN_AS_ROOT);
}

static void test_step_names(void **state) {
        for (int s = 0; s < _WORKER_STEP_MAX; s++)
                assert_int_equal(worker_step_from_string(worker_step_to_string((WorkerStep) s)), s);
        assert_int_equal(worker_step_from_string("rollback"), -EINVAL);
        assert_int_equal(worker_step_from_string(NULL), -EINVAL);
        assert_null(worker_step_to_string(_WORKER_STEP_MAX));
}

static void test_encode_refuses_what_would_not_decode(void **state) {
        WorkerJob j = sample(WORKER_STEP_ACTIVATE);
        json_t *msg = NULL;

        j.activate.sha = NULL;
        assert_int_equal(worker_job_encode(&j, &msg), -EINVAL);
        assert_null(msg);
        j = sample(WORKER_STEP_ACTIVATE);
        j.step = _WORKER_STEP_MAX;
        assert_int_equal(worker_job_encode(&j, &msg), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip_every_step),
                cmocka_unit_test(test_round_trip_fields),
                cmocka_unit_test(test_missing_fields),
                cmocka_unit_test(test_unknown_fields),
                cmocka_unit_test(test_mistyped_fields),
                cmocka_unit_test(test_out_of_range_and_bad_values),
                cmocka_unit_test(test_privilege_table_is_enforced),
                cmocka_unit_test(test_step_names),
                cmocka_unit_test(test_encode_refuses_what_would_not_decode),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
