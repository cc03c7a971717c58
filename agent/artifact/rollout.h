/* rollout.h: the rollout policy a pointer object carries (docs/design.md,
 * "Fleet"): which wave is open, whether this host is in it. Pure: no I/O, no
 * clock reads; the worker and deployctl pass the time in.
 *
 * Body: the sha on the first line (as discover_parse_pointer reads it: the
 * rest of that line after white space is ignored, as it always was), then
 * zero or more "key=value" lines:
 *     started=<unix seconds>  waves=<basis points, ascending, last 10000>
 *     wave_interval=<seconds>  max_failures=<N>  paused=yes|no  previous=<sha>
 * A malformed line, a duplicate or an unknown key is an error naming the line
 * and the key: the agent then takes nothing (the running release keeps
 * running). No policy lines: every host takes the build at once. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ROLLOUT_WAVES_MAX 16
#define ROLLOUT_BUCKETS 10000
/* A policy is a few lines; anything longer is not one of ours. */
#define ROLLOUT_BODY_MAX 4096

typedef struct RolloutPolicy {
        char sha[41];
        bool has_waves;
        uint64_t started_usec;             /* wall clock, CLOCK_REALTIME */
        unsigned waves[ROLLOUT_WAVES_MAX]; /* basis points */
        size_t n_waves;
        uint64_t wave_interval_usec;
        unsigned max_failures; /* >= 1 */
        bool paused;
        char previous[41]; /* "" when absent */
} RolloutPolicy;

/* Parses a pointer body. 0, or -EBADMSG with *ret_error naming the line and
 * key ("line 3: waves: not ascending"), or -ENOMEM. */
int rollout_parse(const char *body, size_t n, RolloutPolicy *ret, char **ret_error);

/* The body rollout_parse reads back into *p (malloc'ed; NULL = ENOMEM). */
char *rollout_format(const RolloutPolicy *p);

/* 0..9999: the first 8 bytes of SHA-256(host_id "\n" sha), big-endian, mod
 * 10000. Per (host, build), so each build picks other first-wave hosts. */
unsigned rollout_bucket(const char *host_id, const char *sha);

/* The open wave: 0 while now < started (a host whose clock is behind stays
 * in the first wave, the conservative side), else
 * min(n_waves - 1, (now - started) / wave_interval). 0 without waves. */
size_t rollout_open_wave(const RolloutPolicy *p, uint64_t now_usec);

/* Whether a host that is not on p->sha yet may take it now: never while
 * paused; always without waves; a canary always (the first wave is always
 * open); else when its bucket is under the open wave's basis points. */
bool rollout_admits(const RolloutPolicy *p, const char *host_id, bool canary, uint64_t now_usec);

/* 1..64 characters of [A-Za-z0-9._-], not starting with '_' or '.': a host
 * id names an S3 key, and '_' is kept for markers like bad/<sha>/_abort. */
bool rollout_host_id_is_valid(const char *s);

/* The most a pointer may say: year 9999, and one wave a year. */
#define ROLLOUT_STARTED_MAX_SEC UINT64_C(253402300799)
#define ROLLOUT_INTERVAL_MAX_SEC UINT64_C(31536000)
/* "Never": the largest time the worker protocol carries (an int64 on the wire). */
#define ROLLOUT_USEC_NEVER ((uint64_t) INT64_MAX)

/* When wave k opens (started + k * wave_interval); ROLLOUT_USEC_NEVER when
 * that would not fit. */
uint64_t rollout_wave_opens_usec(const RolloutPolicy *p, size_t k);

/* The first wave whose basis points exceed bucket (the wave that admits it). */
size_t rollout_wave_of_bucket(const RolloutPolicy *p, unsigned bucket);
