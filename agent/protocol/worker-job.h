/* worker-job.h: the job the supervisor sends a worker, one struct per step,
 * encoded and decoded side by side in worker-job.c. On the wire:
 *
 *   {"step":"fetch","service":"api","log_level":6,
 *    "limits":{"cpu_sec":N,"as_bytes":N,"fsize_bytes":N,"nofile":N},
 *    "run_as":{"uid":N,"gid":N} | null,
 *    "fetch":{...the step's own fields...}}
 *
 * Every field is always present (an optional value is null): the decoder
 * refuses a missing, unknown or mistyped field and names it. Defaults live
 * in config/ only; a worker never fills in a value the job lacks.
 *
 * Ownership: worker_job_encode() only reads (the supervisor fills a job
 * with pointers borrowed from its config and state); a decoded job owns
 * every string in it and is released with worker_job_done(). */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"
#include "protocol/worker-protocol.h"

/* A limit of 0 is not set. */
typedef struct WorkerLimits {
        uint64_t cpu_sec;
        uint64_t as_bytes;
        uint64_t fsize_bytes;
        uint64_t nofile;
} WorkerLimits;

typedef struct WorkerUser {
        bool set;                      /* false: keep the agent's user (it is not root) */
        uid_t uid;
        gid_t gid;
} WorkerUser;

/* Leftovers of killed steps under root and downloads_dir, removed for at
 * most budget_usec: what is left goes at a later pass. */
typedef struct CleanupJob {
        char *root;
        char *downloads_dir;
        uint64_t budget_usec;
} CleanupJob;

#define SHA_MAX_LEN 40 /* sha_is_valid(): 7 to 40 hex digits */
#define FLEET_SETTLED_MAX 16

/* Discover's part of the fleet (docs/design.md, "Fleet"). */
typedef struct FleetJob {
        char *prefix;                  /* [service] fleet_prefix; NULL: no breaker */
        char *host_id;                 /* NULL: resolve it (IMDS, else /etc/machine-id) */
        bool canary;
        /* shas the supervisor decides on alone (current, bad here, halted):
         * no wave check and no breaker LIST for them */
        char settled[FLEET_SETTLED_MAX][SHA_MAX_LEN + 1];
        size_t n_settled;
} FleetJob;

typedef struct DiscoverJob {
        S3Config s3;
        char *bucket;
        char *prefix;
        char *suffix;
        SelectMode select;
        char *pointer_key;             /* select = pointer */
        char *pointer_etag;            /* of the pointer last settled, or NULL */
        FleetJob fleet;
} DiscoverJob;

typedef struct FetchJob {
        S3Config s3;
        char *bucket;
        char *key;
        char *sha;
        char *suffix;
        char *etag;                    /* expected, or NULL */
        char *downloads_dir;           /* the download lands in <sha><suffix> there */
        ChecksumMode checksum;
        char *public_key;              /* NULL: no signature required */
        uint64_t max_artifact_size;
        bool resume;
} FetchJob;

/* The archive is downloads_dir/<sha><suffix>, which root opens without
 * following links and takes only as a regular file with one link owned by
 * download_uid (the user fetch ran as). */
typedef struct UnpackJob {
        char *downloads_dir;
        char *sha;
        char *suffix;
        uid_t download_uid;
        char *releases_dir;
        uint64_t max_unpacked_size;
        uint64_t max_entries;
} UnpackJob;

typedef struct ActivateJob {
        char *root;
        char *sha;
        char *pre_activate;            /* NULL: none */
        char *post_activate;
        uint64_t hook_timeout_usec;
        char *unit;                    /* NULL: none; else checked restartable before the swap */
} ActivateJob;

typedef struct RestartJob {
        char *root;
        char *sha;
        char *unit;                    /* NULL: health checks only */
        RestartMode restart_mode;
        char *health_url;
        char *health_command;
        uint64_t health_settle_usec;
        uint64_t health_timeout_usec;
} RestartJob;

#define PRUNE_PROTECT_MAX 4

typedef struct PruneJob {
        char *root;
        char *downloads_dir;
        uint64_t keep;
        char protect[PRUNE_PROTECT_MAX][SHA_MAX_LEN + 1]; /* shas never removed */
        size_t n_protect;
} PruneJob;

/* The fleet objects one host writes: status/<host_id>.json (its text made
 * by the supervisor) and one bad/<sha>/<host_id> marker. */
typedef struct ReportJob {
        S3Config s3;
        char *bucket;
        char *fleet_prefix;
        char *host_id;
        char *status;                  /* JSON text, or NULL */
        char *bad_sha;                 /* NULL: no marker to write */
        char *bad_body;
} ReportJob;

typedef struct WorkerJob {
        WorkerStep step;
        char *service;
        int log_level;                 /* LOG_ERR .. LOG_DEBUG */
        WorkerLimits limits;
        WorkerUser run_as;
        union {
                CleanupJob cleanup;
                DiscoverJob discover;
                FetchJob fetch;
                UnpackJob unpack;
                ActivateJob activate;
                RestartJob restart;
                PruneJob prune;
                ReportJob report;
        };
} WorkerJob;

/* The job as a JSON object; -EINVAL for a job that would not decode
 * (a string that is not UTF-8, a step out of range). */
int worker_job_encode(const WorkerJob *j, json_t **ret);

/* Decode msg as a job of step (the step this worker was started for):
 * -EBADMSG, with a message naming the field, for anything not exactly a job. */
int worker_job_decode(json_t *msg, WorkerStep step, WorkerJob *ret, char **ret_error);

void worker_job_done(WorkerJob *j);
