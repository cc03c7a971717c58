/* s3-retry.c: exponential backoff with full jitter (the pause before retry
 * n is uniform in [0, min(cap, base * 2^(n-1))]), so that a fleet hit by
 * the same S3 hiccup does not come back in lockstep. */
#include <sys/random.h>
#include <time.h>

#include "s3/s3.h"
#include "common/util.h"

#define BACKOFF_BASE_USEC (250 * USEC_PER_MSEC)
#define BACKOFF_SLOWDOWN_BASE_USEC (1000 * USEC_PER_MSEC)
#define BACKOFF_CAP_USEC (20 * USEC_PER_SEC)

bool s3_error_is_transient(int r) {
        switch (r) {
        case -ECONNRESET:
        case -ETIMEDOUT:
        case -ECONNREFUSED:
        case -EHOSTUNREACH:
        case -EAGAIN:
        case -EBUSY:
                return true;
        default:
                return false;
        }
}

uint64_t s3_backoff_delay(unsigned failures, int r, uint64_t random) {
        uint64_t ceiling = r == -EBUSY ? BACKOFF_SLOWDOWN_BASE_USEC : BACKOFF_BASE_USEC;

        for (unsigned i = 1; i < failures && ceiling < BACKOFF_CAP_USEC; i++)
                ceiling *= 2;
        if (ceiling > BACKOFF_CAP_USEC)
                ceiling = BACKOFF_CAP_USEC;
        return random % (ceiling + 1);
}

static uint64_t random_u64(void) {
        uint64_t v = 0;

        if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
                v = now_usec(CLOCK_MONOTONIC) * UINT64_C(6364136223846793005) + (uint64_t) getpid();
        return v;
}

static void sleep_usec(uint64_t usec) {
        struct timespec ts = {
                .tv_sec = (time_t) (usec / USEC_PER_SEC),
                .tv_nsec = (long) (usec % USEC_PER_SEC) * 1000,
        };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

int s3_backoff_wait(S3Backoff *b, int r) {
        uint64_t pause;

        if (!s3_error_is_transient(r) || b->failures + 1 >= S3_RETRY_ATTEMPTS)
                return r;
        b->failures++;
        pause = s3_backoff_delay(b->failures, r, random_u64());
        sleep_usec(pause);
        b->slept_usec += pause;
        return 0;
}
