/* fuzz-rollout.c: the rollout policy parser. What it accepts must format back
 * to a body it reads as the same policy, with a sha discover_parse_pointer
 * reads too (an agent without policies must still see the same build). */
#include "artifact/discover.h"
#include "artifact/rollout.h"
#include "common/util.h"
#include "fuzz.h"

static void check_same(const RolloutPolicy *a, const RolloutPolicy *b) {
        if (!streq(a->sha, b->sha) || a->has_waves != b->has_waves || a->started_usec != b->started_usec ||
            a->n_waves != b->n_waves || a->wave_interval_usec != b->wave_interval_usec ||
            a->max_failures != b->max_failures || a->paused != b->paused || !streq(a->previous, b->previous) ||
            memcmp(a->waves, b->waves, a->n_waves * sizeof a->waves[0]) != 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_free_ char *error = NULL, *text = NULL;
        RolloutPolicy p, q;
        char sha[41];

        if (rollout_parse((const char *) data, size, &p, &error) < 0) {
                if (!error)
                        abort();
                return 0;
        }
        if (discover_parse_pointer((const char *) data, size, sha) < 0 || !streq(sha, p.sha))
                abort();
        if (p.has_waves && (p.n_waves == 0 || p.waves[p.n_waves - 1] != ROLLOUT_BUCKETS))
                abort();
        if (rollout_open_wave(&p, UINT64_MAX) >= (p.n_waves > 0 ? p.n_waves : 1))
                abort();
        text = rollout_format(&p);
        if (!text)
                return 0;
        if (rollout_parse(text, strlen(text), &q, &error) < 0)
                abort();
        check_same(&p, &q);
        return 0;
}
