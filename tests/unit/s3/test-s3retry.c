/* test-s3retry.c: which failures are retried and the full jitter backoff. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "s3/s3.h"
#include "common/util.h"

#define MS USEC_PER_MSEC

static void test_transient(void **state) {
        static const int yes[] = { -ECONNRESET, -ETIMEDOUT, -ECONNREFUSED, -EHOSTUNREACH, -EAGAIN, -EBUSY };
        static const int no[] = { -ENOENT, -EACCES, -ESTALE, -EIO, -EFBIG, -EBADMSG, -ENXIO, -EINVAL, -ENOMEM, 0 };

        for (size_t i = 0; i < ELEMENTSOF(yes); i++)
                assert_true(s3_error_is_transient(yes[i]));
        for (size_t i = 0; i < ELEMENTSOF(no); i++)
                assert_false(s3_error_is_transient(no[i]));
}

static void test_delay_bounds(void **state) {
        /* The ceiling doubles per failure from 250 ms (1 s for SlowDown),
         * capped at 20 s; the pause is uniform below it. */
        assert_int_equal(s3_backoff_delay(1, -EAGAIN, UINT64_MAX), UINT64_MAX % (250 * MS + 1));
        assert_int_equal(s3_backoff_delay(1, -EAGAIN, 250 * MS), 250 * MS);
        assert_int_equal(s3_backoff_delay(1, -EAGAIN, 250 * MS + 1), 0);
        assert_int_equal(s3_backoff_delay(2, -EAGAIN, 500 * MS), 500 * MS);
        assert_int_equal(s3_backoff_delay(4, -ECONNRESET, 2000 * MS), 2000 * MS);
        assert_int_equal(s3_backoff_delay(1, -EBUSY, 1000 * MS), 1000 * MS);
        assert_int_equal(s3_backoff_delay(3, -EBUSY, 4000 * MS), 4000 * MS);
        assert_int_equal(s3_backoff_delay(30, -EBUSY, 20000 * MS), 20000 * MS);
        assert_int_equal(s3_backoff_delay(1000, -EAGAIN, 20000 * MS + 1), 0);
        for (uint64_t r = 0; r < 100000; r += 997)
                assert_true(s3_backoff_delay(3, -EAGAIN, r * 7919) <= 1000 * MS);
}

static void test_not_retried(void **state) {
        S3Backoff b = {};

        assert_int_equal(s3_backoff_wait(&b, -ENOENT), -ENOENT);
        assert_int_equal(s3_backoff_wait(&b, -EACCES), -EACCES);
        assert_int_equal(b.failures, 0);
        /* The last of S3_RETRY_ATTEMPTS attempts failed: no more. */
        b.failures = S3_RETRY_ATTEMPTS - 1;
        assert_int_equal(s3_backoff_wait(&b, -ECONNRESET), -ECONNRESET);
        b.failures = S3_RETRY_ATTEMPTS - 2;
        assert_int_equal(s3_backoff_wait(&b, -ECONNRESET), 0);
        assert_int_equal(b.failures, S3_RETRY_ATTEMPTS - 1);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_transient),
                cmocka_unit_test(test_delay_bounds),
                cmocka_unit_test(test_not_retried),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
