/* test-worker-start.c: a worker that dies before its job reaches it fails
 * its step through its exit status, like a worker killed later, instead of
 * being reported as a worker that could not start. Includes the .c to point
 * the pool at a program of the test's choosing. */
#include "supervisor/worker-pool.c" /* first: it defines _GNU_SOURCE, and cmocka a fail() macro */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/stat.h>

typedef struct Seen {
        bool done;
        bool ok;
        char *error;
} Seen;

static void on_done(WorkerOutcome *o, void *userdata) {
        Seen *seen = userdata;

        seen->done = true;
        seen->ok = o->ok;
        seen->error = o->error ? strdup(o->error) : NULL;
}

/* Run the pool with prog as the worker binary until the step ends. */
static void run_worker(const char *prog, Seen *seen) {
        sd_event *e = NULL;
        json_t *job = json_object();
        Worker *w = NULL;
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + 60 * USEC_PER_SEC;

        worker_exe_fd = open(prog, O_PATH | O_CLOEXEC);
        assert_true(worker_exe_fd >= 0);
        assert_int_equal(sd_event_new(&e), 0);
        assert_int_equal(worker_start(e, "restart", job, 60 * USEC_PER_SEC, NULL, on_done, seen, &w), 0);
        while (!seen->done && now_usec(CLOCK_MONOTONIC) < deadline)
                assert_true(sd_event_run(e, 1 * USEC_PER_SEC) >= 0);
        assert_true(seen->done);
        json_decref(job);
        sd_event_unref(e);
        close(worker_exe_fd);
        worker_exe_fd = -1;
}

static char *write_program(const char *text, mode_t mode) {
        char path[] = "/tmp/test-worker-pool-XXXXXX";
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        assert_int_equal(loop_write(fd, text, strlen(text)), 0);
        assert_int_equal(fchmod(fd, mode), 0);
        close(fd);
        return strdup(path);
}

/* exec fails, so the child is gone when the job is sent (vfork returns
 * after its _exit): the send fails with EPIPE every time. */
static void test_worker_dead_before_its_job(void **unused) {
        _cleanup_free_ char *prog = write_program("not a program\n", 0600);
        Seen seen = {};

        run_worker(prog, &seen);
        assert_false(seen.ok);
        assert_string_equal(seen.error, "restart worker exited with status 127 without a result");
        free(seen.error);
        unlink(prog);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_worker_dead_before_its_job),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
