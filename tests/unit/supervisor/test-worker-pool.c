/* test-worker-pool.c: what the supervisor makes of a worker's answer,
 * without a process: progress messages, the one result, garbage, an
 * oversized datagram, a second result, a result without "ok", a worker
 * that exits without a result, dies by a signal, or times out. Each
 * message goes through worker_reading_message() as drain() hands it over,
 * the end through worker_reading_finish() with the wait status. */
#include "supervisor-fixture.h"

#include <signal.h>
#include <sys/wait.h>

#define EXITED(code) W_EXITCODE(code, 0)
#define KILLED(sig) (sig)

typedef struct Reader {
        WorkerReading rd;
        WorkerOutcome o;
        uint64_t bytes, total;
} Reader;

static void reader_init(Reader *x, const char *step) {
        *x = (Reader) { .rd.step = step, .bytes = UINT64_MAX, .total = UINT64_MAX };
}

static WorkerMessage feed_n(Reader *x, const char *text, size_t n) {
        return worker_reading_message(&x->rd, text, n, &x->bytes, &x->total);
}

static WorkerMessage feed(Reader *x, const char *text) {
        return feed_n(x, text, strlen(text));
}

static void finish(Reader *x, int status) {
        worker_reading_finish(&x->rd, status, &x->o);
        /* everything moved into the outcome: nothing left to free twice */
        assert_null(x->rd.result);
        assert_null(x->rd.error);
}

static void reader_done(Reader *x) {
        worker_reading_done(&x->rd);
        json_decref(x->o.result);
        free(x->o.error);
}

/* An outcome that failed with exactly this error and no result. */
static void assert_failed(const Reader *x, const char *error) {
        assert_false(x->o.ok);
        assert_false(x->o.bad);
        assert_null(x->o.result);
        assert_non_null(x->o.error);
        assert_string_equal(x->o.error, error);
}

static void test_progress_then_result(void **unused) {
        Reader x;

        fixture_quiet();
        reader_init(&x, "fetch");
        assert_int_equal(feed(&x, "{\"progress\":{\"bytes\":10,\"total\":100}}"), WORKER_MESSAGE_PROGRESS);
        assert_int_equal(x.bytes, 10);
        assert_int_equal(x.total, 100);
        /* what is missing or negative reads as 0: progress is only shown */
        assert_int_equal(feed(&x, "{\"progress\":{\"bytes\":-5}}"), WORKER_MESSAGE_PROGRESS);
        assert_int_equal(x.bytes, 0);
        assert_int_equal(x.total, 0);
        assert_int_equal(feed(&x, "{\"ok\":true,\"path\":\"/d/x.tar.gz\"}"), WORKER_MESSAGE_RESULT);
        finish(&x, EXITED(0));
        assert_true(x.o.ok);
        assert_false(x.o.bad);
        assert_null(x.o.error);
        assert_string_equal(json_string_value(json_object_get(x.o.result, "path")), "/d/x.tar.gz");
        reader_done(&x);
}

/* A "progress" that is not an object is no progress message: with "ok"
 * it is a result like any other. */
static void test_progress_not_an_object(void **unused) {
        Reader x;

        reader_init(&x, "fetch");
        assert_int_equal(feed(&x, "{\"progress\":5,\"ok\":true}"), WORKER_MESSAGE_RESULT);
        finish(&x, EXITED(0));
        assert_true(x.o.ok);
        reader_done(&x);
}

static void test_step_says_no(void **unused) {
        Reader x;

        reader_init(&x, "fetch");
        assert_int_equal(feed(&x, "{\"ok\":false,\"error\":\"sha256 mismatch\",\"bad\":true}"), WORKER_MESSAGE_RESULT);
        finish(&x, EXITED(1));
        assert_false(x.o.ok);
        assert_true(x.o.bad);
        assert_non_null(x.o.result);
        assert_string_equal(x.o.error, "fetch: sha256 mismatch");
        reader_done(&x);

        /* no reason given, and "bad" of the wrong type: not bad */
        reader_init(&x, "unpack");
        assert_int_equal(feed(&x, "{\"ok\":false,\"bad\":\"yes\"}"), WORKER_MESSAGE_RESULT);
        finish(&x, EXITED(0));
        assert_false(x.o.ok);
        assert_false(x.o.bad);
        assert_string_equal(x.o.error, "unpack: failed without a reason");
        reader_done(&x);
}

/* A worker that ends badly after its result still delivered it (the
 * supervisor only logs the status). */
static void test_result_then_crash(void **unused) {
        Reader x;

        reader_init(&x, "restart");
        assert_int_equal(feed(&x, "{\"ok\":true}"), WORKER_MESSAGE_RESULT);
        finish(&x, KILLED(SIGSEGV));
        assert_true(x.o.ok);
        assert_null(x.o.error);
        reader_done(&x);
}

static void test_garbage(void **unused) {
        static const char *const garbage[] = {
                "not json", "{\"ok\":true", "[1,2]", "\"ok\"", "{\"ok\":true,\"ok\":false}", "",
        };
        Reader x;

        for (size_t i = 0; i < ELEMENTSOF(garbage); i++) {
                reader_init(&x, "discover");
                assert_int_equal(feed(&x, garbage[i]), WORKER_MESSAGE_INVALID);
                assert_non_null(x.rd.error);
                assert_non_null(strstr(x.rd.error, "discover worker sent garbage: "));
                /* the supervisor kills it: the first reason is the one reported */
                assert_int_equal(feed(&x, "{\"ok\":true}"), WORKER_MESSAGE_RESULT);
                finish(&x, KILLED(SIGKILL));
                assert_false(x.o.ok);
                assert_null(x.o.result);
                assert_non_null(strstr(x.o.error, "discover worker sent garbage: "));
                reader_done(&x);
        }
}

/* At most WORKER_MESSAGE_MAX bytes; what recv(MSG_TRUNC) says was longer
 * is refused before a byte of it is read. */
static void test_oversized(void **unused) {
        _cleanup_free_ char *buf = malloc(WORKER_MESSAGE_MAX + 1);
        const char *progress = "{\"progress\":{\"bytes\":1,\"total\":2}}";
        Reader x;

        assert_non_null(buf);
        memset(buf, ' ', WORKER_MESSAGE_MAX + 1);
        memcpy(buf, progress, strlen(progress));
        reader_init(&x, "fetch");
        assert_int_equal(feed_n(&x, buf, WORKER_MESSAGE_MAX), WORKER_MESSAGE_PROGRESS);
        assert_int_equal(x.total, 2);
        assert_int_equal(feed_n(&x, buf, WORKER_MESSAGE_MAX + 1), WORKER_MESSAGE_INVALID);
        assert_string_equal(x.rd.error, "fetch worker sent an oversized message");
        finish(&x, KILLED(SIGKILL));
        assert_failed(&x, "fetch worker sent an oversized message");
        reader_done(&x);

        reader_init(&x, "fetch");
        assert_int_equal(feed_n(&x, "{}", 1 << 20), WORKER_MESSAGE_INVALID);
        finish(&x, KILLED(SIGKILL));
        assert_failed(&x, "fetch worker sent an oversized message");
        reader_done(&x);
}

/* One result only: a second one, or progress after it, breaks the
 * protocol and the first result is not trusted either. */
static void test_after_the_result(void **unused) {
        static const char *const after[] = {
                "{\"ok\":true}", "{\"ok\":false,\"error\":\"x\"}", "{\"progress\":{\"bytes\":1,\"total\":2}}",
        };
        Reader x;

        for (size_t i = 0; i < ELEMENTSOF(after); i++) {
                reader_init(&x, "activate");
                assert_int_equal(feed(&x, "{\"ok\":true}"), WORKER_MESSAGE_RESULT);
                assert_int_equal(feed(&x, after[i]), WORKER_MESSAGE_INVALID);
                finish(&x, KILLED(SIGKILL));
                assert_failed(&x, "activate worker broke protocol");
                reader_done(&x);
        }
}

/* An object that is neither progress nor a result with a boolean "ok". */
static void test_result_without_ok(void **unused) {
        static const char *const broken[] = {
                "{\"error\":\"x\"}", "{\"ok\":1}", "{\"ok\":\"true\"}", "{\"ok\":null}", "{}",
        };
        Reader x;

        for (size_t i = 0; i < ELEMENTSOF(broken); i++) {
                reader_init(&x, "prune");
                assert_int_equal(feed(&x, broken[i]), WORKER_MESSAGE_INVALID);
                finish(&x, EXITED(0));
                assert_failed(&x, "prune worker broke protocol");
                reader_done(&x);
        }
}

static void test_no_result(void **unused) {
        Reader x;

        reader_init(&x, "unpack");
        assert_int_equal(feed(&x, "{\"progress\":{\"bytes\":1,\"total\":2}}"), WORKER_MESSAGE_PROGRESS);
        finish(&x, EXITED(0));
        assert_failed(&x, "unpack worker exited with status 0 without a result");
        reader_done(&x);

        reader_init(&x, "unpack");
        finish(&x, EXITED(127));
        assert_failed(&x, "unpack worker exited with status 127 without a result");
        reader_done(&x);
}

static void test_killed_by_signal(void **unused) {
        Reader x;

        reader_init(&x, "fetch");
        finish(&x, KILLED(SIGSEGV));
        assert_failed(&x, "fetch worker killed by SIGSEGV");
        reader_done(&x);

        /* seccomp kills with SIGSYS */
        reader_init(&x, "unpack");
        finish(&x, KILLED(SIGSYS));
        assert_failed(&x, "unpack worker killed by SIGSYS: it made a system call its seccomp "
                          "allow-list forbids (the kernel log names it)");
        reader_done(&x);
}

/* The timeout is the reason, not the SIGKILL it led to; a result sent
 * before the worker hung is not trusted. */
static void test_timed_out(void **unused) {
        Reader x;

        reader_init(&x, "restart");
        worker_reading_timed_out(&x.rd, 90 * USEC_PER_SEC);
        finish(&x, KILLED(SIGKILL));
        assert_failed(&x, "restart worker timed out after 90s");
        reader_done(&x);

        reader_init(&x, "restart");
        assert_int_equal(feed(&x, "{\"ok\":true}"), WORKER_MESSAGE_RESULT);
        worker_reading_timed_out(&x.rd, 90 * USEC_PER_SEC);
        finish(&x, KILLED(SIGTERM));
        assert_failed(&x, "restart worker timed out after 90s");
        reader_done(&x);

        /* stopped first, then the grace period ran out: still "stopped" */
        reader_init(&x, "fetch");
        worker_reading_fail(&x.rd, "%s worker stopped", "fetch");
        worker_reading_timed_out(&x.rd, 90 * USEC_PER_SEC);
        finish(&x, KILLED(SIGKILL));
        assert_failed(&x, "fetch worker stopped");
        reader_done(&x);
}

/* A reading dropped before the worker ended frees what it holds. */
static void test_done_frees(void **unused) {
        Reader x;

        reader_init(&x, "fetch");
        assert_int_equal(feed(&x, "{\"ok\":true}"), WORKER_MESSAGE_RESULT);
        worker_reading_fail(&x.rd, "fetch worker stopped");
        worker_reading_done(&x.rd);
        assert_null(x.rd.result);
        assert_null(x.rd.error);
}

/* The fake pool of the pipeline's tests answers as the real reading does. */
static void check_fake(const char *step, Outcome how, const char *answer, int status, uint64_t timeout_usec) {
        WorkerOutcome fake = outcome(step, NULL, how);
        Reader x;

        reader_init(&x, step);
        if (answer)
                assert_int_equal(feed(&x, answer), WORKER_MESSAGE_RESULT);
        if (timeout_usec)
                worker_reading_timed_out(&x.rd, timeout_usec);
        finish(&x, status);
        assert_int_equal(fake.ok, x.o.ok);
        assert_int_equal(fake.bad, x.o.bad);
        assert_int_equal(!fake.result, !x.o.result);
        if (fake.error)
                assert_string_equal(fake.error, x.o.error);
        else
                assert_null(x.o.error);
        json_decref(fake.result);
        free(fake.error);
        reader_done(&x);
}

static void test_fake_matches(void **unused) {
        check_fake("fetch", OUTCOME_OK, "{\"ok\":true}", EXITED(0), 0);
        check_fake("fetch", OUTCOME_FAIL, "{\"ok\":false,\"error\":\"it broke\",\"bad\":false}", EXITED(1), 0);
        check_fake("unpack", OUTCOME_BAD, "{\"ok\":false,\"error\":\"it broke\",\"bad\":true}", EXITED(1), 0);
        /* a restart's failure blames the release, unless the unit was gone */
        check_fake("restart", OUTCOME_FAIL, "{\"ok\":false,\"error\":\"it broke\",\"bad\":true}", EXITED(1), 0);
        check_fake("restart", OUTCOME_UNIT_GONE, "{\"ok\":false,\"error\":\"it broke\",\"bad\":false}", EXITED(1), 0);
        check_fake("restart", OUTCOME_CRASH, NULL, KILLED(SIGSEGV), 0);
        check_fake("restart", OUTCOME_TIMEOUT, NULL, KILLED(SIGKILL), 60 * USEC_PER_SEC);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_progress_then_result),
                cmocka_unit_test(test_progress_not_an_object),
                cmocka_unit_test(test_step_says_no),
                cmocka_unit_test(test_result_then_crash),
                cmocka_unit_test(test_garbage),
                cmocka_unit_test(test_oversized),
                cmocka_unit_test(test_after_the_result),
                cmocka_unit_test(test_result_without_ok),
                cmocka_unit_test(test_no_result),
                cmocka_unit_test(test_killed_by_signal),
                cmocka_unit_test(test_timed_out),
                cmocka_unit_test(test_done_frees),
                cmocka_unit_test(test_fake_matches),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
