/* test-worker-result.c: every reply survives encode and decode unchanged;
 * the supervisor refuses a malformed reply, and one that does not match the
 * job it sent, naming the field (a compromised worker is the threat). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "common/util.h"
#include "protocol/worker-result.h"

#define SHA "3f2c1ab9d0e4f5a6b7c8d9e0f1a2b3c4d5e6f708"
#define OTHER "9ab0c1d"
#define HEX "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static WorkerResult sample(WorkerStep step) {
        WorkerResult r = { .step = step };

        switch (step) {
        case WORKER_STEP_DISCOVER:
                r.discover = (DiscoverResult) { .found = true, .sha = SHA, .key = "api/" SHA ".tar.gz",
                                                .etag = "\"e1\"", .last_modified_usec = 1700000000000000,
                                                .size = 170, .sidecar_sha256 = true, .pointer_etag = "\"p1\"",
                                                .host_id = "i-0abc", .zone = "us-east-1a",
                                                .rollout = { .set = true, .sha = SHA, .wave = 1, .n_waves = 3,
                                                             .percent_bp = 5000, .bucket = 4321, .host_wave = 1,
                                                             .opens_usec = 1700000060000000, .admitted = true } };
                break;
        case WORKER_STEP_REPORT:
                r.report = (ReportResult) { .status_written = true, .bad_written = false, .error = "PUT bad: 503" };
                break;
        case WORKER_STEP_FETCH:
                r.fetch = (FetchResult) { .sha = SHA, .key = "api/" SHA ".tar.gz", .size = 1000, .sha256 = HEX,
                                          .downloaded = 600, .reused = 400, .checksum_verified = true };
                break;
        case WORKER_STEP_UNPACK:
                r.unpack = (UnpackResult) { .sha = SHA, .entries = 3, .bytes = 42 };
                break;
        case WORKER_STEP_ACTIVATE:
                r.activate = (ActivateResult) { .sha = SHA, .changed = true, .previous = OTHER,
                                                .warning = "post_activate hook exited with status 1" };
                break;
        case WORKER_STEP_RESTART:
                r.restart = (RestartResult) { .sha = SHA, .detail = "health_url HTTP 200", .n_restarts = 2 };
                break;
        case WORKER_STEP_CLEANUP:
                r.cleanup = (CleanupResult) { .removed = 6, .complete = false };
                break;
        case WORKER_STEP_PRUNE:
                r.prune = (PruneResult) { .removed = 3 };
                break;
        default:
                fail();
        }
        return r;
}

/* The jobs the samples answer. */
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
                                       .downloads_dir = "/d", .checksum = CHECKSUM_REQUIRED, .max_artifact_size = 1000 };
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
                j.report = (ReportJob) { .bucket = "b", .fleet_prefix = "fleet/", .host_id = "i-0abc" };
                break;
        default:
                j.prune = (PruneJob) { .root = "/srv/api", .downloads_dir = "/d", .keep = 5 };
        }
        return j;
}

static json_t *encoded(const WorkerResult *r) {
        json_t *msg = NULL;

        assert_int_equal(worker_result_encode(r, &msg), 0);
        return msg;
}

static void test_round_trip_every_step(void **state) {
        for (int step = 0; step < _WORKER_STEP_MAX; step++) {
                WorkerResult r = sample((WorkerStep) step), back = {};
                json_auto_t *m1 = encoded(&r), *m2 = NULL;
                _cleanup_free_ char *error = NULL;
                WorkerJob j = job_for((WorkerStep) step);

                assert_int_equal(worker_result_decode(m1, (WorkerStep) step, &back, &error), 0);
                assert_null(error);
                m2 = encoded(&back);
                assert_true(json_equal(m1, m2));
                assert_int_equal(worker_result_check(&j, &back, &error), 0);
                worker_result_done(&back);
        }
}

static void test_round_trip_fields(void **state) {
        WorkerResult r = sample(WORKER_STEP_ACTIVATE), back = {};
        json_auto_t *m = encoded(&r);

        assert_int_equal(worker_result_decode(m, WORKER_STEP_ACTIVATE, &back, NULL), 0);
        assert_true(back.activate.changed);
        assert_string_equal(back.activate.previous, OTHER);
        assert_string_equal(back.activate.warning, "post_activate hook exited with status 1");
        worker_result_done(&back);

        r = sample(WORKER_STEP_DISCOVER);
        r.discover = (DiscoverResult) { .not_modified = true, .pointer_etag = "\"p1\"" };
        json_decref(m);
        m = encoded(&r);
        assert_int_equal(worker_result_decode(m, WORKER_STEP_DISCOVER, &back, NULL), 0);
        assert_true(back.discover.not_modified);
        assert_false(back.discover.found);
        assert_null(back.discover.sha);
        assert_string_equal(back.discover.pointer_etag, "\"p1\"");
        worker_result_done(&back);
}

/* The shapes the worker pool reads (worker-pool.c). */
static void test_progress_and_failure_messages(void **state) {
        json_auto_t *p = worker_progress_encode(10, 100), *f = worker_failure_encode("sha256 mismatch", true);
        json_auto_t *p_want = json_loads("{\"progress\":{\"bytes\":10,\"total\":100}}", 0, NULL);
        json_auto_t *f_want = json_loads("{\"ok\":false,\"error\":\"sha256 mismatch\",\"bad\":true}", 0, NULL);

        assert_true(json_equal(p, p_want));
        assert_true(json_equal(f, f_want));
}

static void expect_result_refused(const char *text, WorkerStep step, const char *want) {
        json_auto_t *msg = json_loads(text, 0, NULL);
        _cleanup_free_ char *error = NULL;
        WorkerResult r = {};

        assert_non_null(msg);
        assert_int_equal(worker_result_decode(msg, step, &r, &error), -EBADMSG);
        if (!error || !strstr(error, want))
                fail_msg("error \"%s\" does not say \"%s\"", strempty(error), want);
}

#define FETCH_OK "\"sha\":\"" SHA "\",\"key\":\"k\",\"size\":1,\"sha256\":\"" HEX "\",\"downloaded\":1,\"reused\":0"

static void test_results_refused(void **state) {
        /* what a compromised fetch worker of the old protocol would send */
        expect_result_refused("{\"ok\":true,\"result\":{" FETCH_OK ",\"checksum_verified\":true,"
                              "\"signature_verified\":false,\"path\":\"/etc/shadow\"}}",
                              WORKER_STEP_FETCH, "unknown field \"result.path\"");
        expect_result_refused("{\"ok\":true,\"result\":{" FETCH_OK ",\"checksum_verified\":true}}",
                              WORKER_STEP_FETCH, "field \"result.signature_verified\": missing");
        expect_result_refused("{\"ok\":true,\"result\":{" FETCH_OK ",\"checksum_verified\":1,"
                              "\"signature_verified\":false}}",
                              WORKER_STEP_FETCH, "field \"result.checksum_verified\": expected true or false");
        expect_result_refused("{\"ok\":true,\"result\":{\"sha\":\"" SHA "\",\"key\":\"k\",\"size\":1,\"sha256\":\"abc\","
                              "\"downloaded\":1,\"reused\":0,\"checksum_verified\":true,\"signature_verified\":false}}",
                              WORKER_STEP_FETCH, "field \"result.sha256\": not 64 lowercase hex");
        expect_result_refused("{\"ok\":false,\"error\":\"x\",\"bad\":false}", WORKER_STEP_PRUNE,
                              "field \"ok\": not a successful reply");
        expect_result_refused("{\"ok\":true,\"result\":{\"removed\":1.0}}", WORKER_STEP_PRUNE,
                              "field \"result.removed\": expected an integer");
        expect_result_refused("{\"ok\":true,\"result\":{\"sha\":\"../x\",\"reused\":false,\"entries\":1,\"bytes\":1}}",
                              WORKER_STEP_UNPACK, "field \"result.sha\": not a sha");
        expect_result_refused("{\"ok\":true,\"result\":{\"sha\":\"" SHA "\",\"changed\":true,\"previous\":\"/etc\","
                              "\"warning\":null}}", WORKER_STEP_ACTIVATE, "field \"result.previous\": not a sha");
        expect_result_refused("{\"ok\":true,\"result\":{\"found\":false,\"not_modified\":false,\"sha\":\"" SHA "\","
                              "\"key\":null,\"etag\":null,\"last_modified\":0,\"size\":0,"
                              "\"sidecars\":{\"sha256\":false,\"minisig\":false},\"pointer_etag\":null,\"reason\":null,"
                              "\"host_id\":null,\"zone\":null,\"rollout\":null}}",
                              WORKER_STEP_DISCOVER, "field \"result.sha\": set although no build was found");
        expect_result_refused("{\"ok\":true,\"result\":{\"found\":false,\"not_modified\":false,\"sha\":null,"
                              "\"key\":null,\"etag\":null,\"last_modified\":0,\"size\":0,"
                              "\"sidecars\":{\"sha256\":false,\"minisig\":false},\"pointer_etag\":null,\"reason\":null,"
                              "\"host_id\":\"../../x\",\"zone\":null,\"rollout\":null}}",
                              WORKER_STEP_DISCOVER, "field \"result.host_id\": not a host id");
        expect_result_refused("{\"ok\":true,\"result\":{\"status_written\":true,\"bad_written\":1,\"error\":null}}",
                              WORKER_STEP_REPORT, "field \"result.bad_written\": expected true or false");
        /* a cleanup names nothing it removed: no result carries a path */
        expect_result_refused("{\"ok\":true,\"result\":{\"removed\":1,\"complete\":true,"
                              "\"names\":[\"releases/.trash-x\"]}}", WORKER_STEP_CLEANUP,
                              "unknown field \"result.names\"");
        expect_result_refused("{\"ok\":true,\"result\":{\"removed\":1}}", WORKER_STEP_CLEANUP,
                              "field \"result.complete\": missing");
        expect_result_refused("{\"ok\":true,\"result\":{\"removed\":1,\"complete\":1}}", WORKER_STEP_CLEANUP,
                              "field \"result.complete\": expected true or false");
        expect_result_refused("{\"ok\":true,\"result\":{\"removed\":-1,\"complete\":true}}", WORKER_STEP_CLEANUP,
                              "field \"result.removed\": -1 is out of range");
}

/* Decode sample(step) after change() and check it against job_for(step). */
static void expect_mismatch(WorkerStep step, void (*change)(WorkerResult *), void (*change_job)(WorkerJob *),
                            const char *want) {
        _cleanup_free_ char *error = NULL;
        WorkerResult r = sample(step);
        WorkerJob j = job_for(step);

        if (change)
                change(&r);
        if (change_job)
                change_job(&j);
        assert_int_equal(worker_result_check(&j, &r, &error), -EBADMSG);
        if (!error || !strstr(error, want))
                fail_msg("error \"%s\" does not say \"%s\"", strempty(error), want);
}

static void other_sha(WorkerResult *r) { r->fetch.sha = OTHER; }
static void other_key(WorkerResult *r) { r->fetch.key = "api/" OTHER ".tar.gz"; }
static void too_big(WorkerResult *r) { r->fetch.size = 1001; }
static void reused_more(WorkerResult *r) { r->fetch.reused = 2000; }
static void unsigned_claim(WorkerResult *r) { r->fetch.signature_verified = true; }
static void key_elsewhere(WorkerResult *r) { r->discover.key = "other/" SHA ".tar.gz"; }
static void not_modified(WorkerResult *r) {
        r->discover = (DiscoverResult) { .not_modified = true, .pointer_etag = "\"p1\"" };
}
static void too_many(WorkerResult *r) { r->unpack.entries = 4; }
static void activated_other(WorkerResult *r) { r->activate.sha = OTHER; }
static void restarted_other(WorkerResult *r) { r->restart.sha = OTHER; }
static void step_swap(WorkerResult *r) { r->step = WORKER_STEP_PRUNE; }
static void cleanup_swap(WorkerResult *r) { r->step = WORKER_STEP_CLEANUP; }
static void newest_job(WorkerJob *j) { j->discover.select = SELECT_NEWEST; }

static void test_result_checked_against_job(void **state) {
        expect_mismatch(WORKER_STEP_FETCH, other_sha, NULL, "field \"result.sha\"");
        expect_mismatch(WORKER_STEP_FETCH, other_key, NULL, "field \"result.key\"");
        expect_mismatch(WORKER_STEP_FETCH, too_big, NULL, "field \"result.size\": over max_artifact_size");
        expect_mismatch(WORKER_STEP_FETCH, reused_more, NULL, "field \"result.reused\"");
        expect_mismatch(WORKER_STEP_FETCH, unsigned_claim, NULL, "field \"result.signature_verified\"");
        expect_mismatch(WORKER_STEP_DISCOVER, key_elsewhere, NULL, "field \"result.key\"");
        expect_mismatch(WORKER_STEP_DISCOVER, NULL, newest_job, "field \"result.pointer_etag\"");
        expect_mismatch(WORKER_STEP_DISCOVER, not_modified, NULL, "field \"result.not_modified\"");
        expect_mismatch(WORKER_STEP_UNPACK, too_many, NULL, "field \"result.entries\"");
        expect_mismatch(WORKER_STEP_ACTIVATE, activated_other, NULL, "field \"result.sha\"");
        expect_mismatch(WORKER_STEP_RESTART, restarted_other, NULL, "field \"result.sha\"");
        expect_mismatch(WORKER_STEP_FETCH, step_swap, NULL, "a prune result for a fetch job");
        expect_mismatch(WORKER_STEP_PRUNE, cleanup_swap, NULL, "a cleanup result for a prune job");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip_every_step),
                cmocka_unit_test(test_round_trip_fields),
                cmocka_unit_test(test_progress_and_failure_messages),
                cmocka_unit_test(test_results_refused),
                cmocka_unit_test(test_result_checked_against_job),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
