/* worker-result.h: what a worker sends back, one struct per step, encoded
 * and decoded side by side in worker-result.c. On the wire, one datagram
 * each:
 *
 *   {"progress":{"bytes":N,"total":N}}          any number, before the reply
 *   {"ok":true,"result":{...the step's fields...}}
 *   {"ok":false,"error":"why","bad":true|false}  "bad": the artifact's fault
 *
 * A restart's failure is the release's fault ("bad") unless systemd refused
 * RestartUnit because the unit is missing or masked: the host's fault.
 *
 * A worker's reply is untrusted input to the supervisor: decoding is strict
 * (every field present, none unknown, each of its type), and
 * worker_result_check() holds each field against the job the supervisor
 * sent. No result carries a path: the supervisor derives every path from
 * its own config, so a worker cannot point root at a file of its choosing
 * (docs/design.md, "Security model"). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "protocol/worker-job.h"
#include "protocol/worker-protocol.h"

typedef struct CleanupResult {
        uint64_t removed;              /* leftovers removed */
        bool complete;                 /* all of them: the budget did not run out */
} CleanupResult;

/* Where this host stands in the pointer's rollout (docs/design.md, "Fleet"). */
typedef struct RolloutResult {
        bool set;                      /* the pointer was read and has a policy or a breaker */
        char *sha;                     /* the build the pointer names */
        uint64_t wave;                 /* open now */
        uint64_t n_waves;              /* 0: no waves, every host at once */
        uint64_t percent_bp;           /* of the open wave */
        uint64_t bucket;               /* this host's, 0..9999 */
        uint64_t host_wave;            /* the wave that admits this host */
        uint64_t opens_usec;           /* realtime when host_wave opens */
        bool admitted;
        bool paused;
        bool halted;                   /* the breaker tripped: never taken */
        char *halt;                    /* hosts and reasons, when halted */
} RolloutResult;

typedef struct DiscoverResult {
        bool found;                    /* sha, key, etag, last_modified name the newest build */
        bool not_modified;             /* select = pointer: the pointer answered 304 */
        char *sha;
        char *key;
        char *etag;
        uint64_t last_modified_usec;
        uint64_t size;
        bool sidecar_sha256;           /* <key>.sha256 exists */
        bool sidecar_minisig;          /* <key>.minisig exists */
        char *pointer_etag;            /* select = pointer: of the pointer that named it */
        char *reason;                  /* neither: why nothing was found */
        char *host_id;                 /* resolved for a job without one, else NULL */
        char *zone;                    /* availability zone from IMDS, or NULL */
        RolloutResult rollout;
} DiscoverResult;

typedef struct FetchResult {
        char *sha;
        char *key;
        uint64_t size;
        char *sha256;                  /* hex of the verified download */
        uint64_t downloaded;           /* bytes received in this run */
        uint64_t reused;               /* bytes of an earlier .part kept */
        bool checksum_verified;
        bool signature_verified;
} FetchResult;

typedef struct UnpackResult {
        char *sha;
        bool reused;                   /* releases/<sha> was there already */
        uint64_t entries;
        uint64_t bytes;
} UnpackResult;

typedef struct ActivateResult {
        char *sha;
        bool changed;                  /* current moved */
        char *previous;                /* what current named before, or NULL */
        char *warning;                 /* post_activate failed, or NULL */
} ActivateResult;

typedef struct RestartResult {
        char *sha;
        char *detail;                  /* what proved it healthy */
        uint64_t n_restarts;
} RestartResult;

typedef struct PruneResult {
        uint64_t removed;              /* releases removed */
} PruneResult;

typedef struct ReportResult {
        bool status_written;
        bool bad_written;
        char *error;                   /* what was not written and why, or NULL */
} ReportResult;

typedef struct WorkerResult {
        WorkerStep step;
        union {
                CleanupResult cleanup;
                DiscoverResult discover;
                FetchResult fetch;
                UnpackResult unpack;
                ActivateResult activate;
                RestartResult restart;
                PruneResult prune;
                ReportResult report;
        };
} WorkerResult;

/* ---- the worker's side ---- */

/* {"ok":true,"result":{...}}; -EINVAL for a result that would not decode. */
int worker_result_encode(const WorkerResult *res, json_t **ret);
json_t *worker_failure_encode(const char *error, bool bad);
json_t *worker_progress_encode(uint64_t bytes, uint64_t total);

/* ---- the supervisor's side ---- */

/* The worker pool tells progress from the reply and reads a failure's
 * "error" and "bad" (supervisor/worker-pool.c); the pipeline decodes a
 * successful reply here, strictly, against the step it ran. */

/* The step's fields of an {"ok":true,...} reply from a worker of step. */
int worker_result_decode(json_t *msg, WorkerStep step, WorkerResult *ret, char **ret_error);
void worker_result_done(WorkerResult *res);

/* Hold each field of res against the job that asked for it: the same
 * step, sha and key, sizes within the job's limits, the pointer mode the
 * job was in. -EBADMSG with a message naming the field otherwise. */
int worker_result_check(const WorkerJob *job, const WorkerResult *res, char **ret_error);
