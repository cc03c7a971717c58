/* pipeline-jobs.c: one builder per step. The user each step runs as comes
 * from the privilege table of protocol/worker-protocol.h (when the agent is
 * root); steps that do not keep root also get an address-space limit, every
 * step CPU and file limits. */
#include "supervisor/pipeline-jobs.h"

#include "common/log.h"
#include "common/util.h"
#include "supervisor/fleet.h"

#define WORKER_AS_LIMIT (UINT64_C(1) << 30)
#define WORKER_NOFILE 256
/* A pass waits for its cleanup: a large leftover tree is removed over
 * several passes rather than holding one up. */
#define CLEANUP_BUDGET_USEC (5 * USEC_PER_SEC)

void pipeline_target_done(Target *t) {
        free(t->sha);
        free(t->key);
        free(t->etag);
        free(t->pointer_etag);
        *t = (Target) {};
}

int pipeline_target_from_result(const DiscoverResult *res, Target *t) {
        pipeline_target_done(t);
        if (!res->found)
                return 0;
        if (state_set(&t->sha, res->sha) < 0 || state_set(&t->key, res->key) < 0 ||
            state_set(&t->etag, res->etag) < 0 || state_set(&t->pointer_etag, res->pointer_etag) < 0)
                return -ENOMEM;
        t->last_modified_usec = res->last_modified_usec;
        return 0;
}

static WorkerUser step_user(const Service *s, WorkerStep step) {
        if (!s->drop)
                return (WorkerUser) {}; /* not root: nobody to switch to */
        switch (worker_step_run_as(step)) {
        case WORKER_RUN_AS_WORKER_USER:
                return (WorkerUser) { .set = true, .uid = s->worker_uid, .gid = s->worker_gid };
        case WORKER_RUN_AS_OWNER:
                return (WorkerUser) { .set = true, .uid = s->owner_uid, .gid = s->owner_gid };
        default:
                return (WorkerUser) {};
        }
}

static WorkerJob job_new(const Service *s, WorkerStep step, uint64_t fsize) {
        bool root = worker_step_run_as(step) == WORKER_RUN_AS_ROOT;

        return (WorkerJob) {
                .step = step,
                .service = s->name,
                .log_level = log_get_max_level(),
                .limits = {
                        .cpu_sec = s->cfg->step_timeout_usec / USEC_PER_SEC,
                        .as_bytes = root ? 0 : WORKER_AS_LIMIT,
                        .fsize_bytes = fsize,
                        .nofile = WORKER_NOFILE,
                },
                .run_as = step_user(s, step),
        };
}

/* j borrows from the config and state: encode it, then decode the message
 * as the worker will, which yields a copy of our own and proves it decodes. */
static int job_finish(const WorkerJob *j, WorkerJob *ret_job, json_t **ret_msg) {
        _cleanup_free_ char *error = NULL;
        json_t *msg = NULL;
        int r;

        r = worker_job_encode(j, &msg);
        if (r < 0)
                return r;
        r = worker_job_decode(msg, j->step, ret_job, &error);
        if (r < 0) {
                log_error("%s job does not decode: %s", worker_step_to_string(j->step), strempty(error));
                json_decref(msg);
                return r;
        }
        *ret_msg = msg;
        return 0;
}

static S3Config s3_config(const Service *s) {
        return s->config->s3;
}

int pipeline_job_cleanup(Service *s, WorkerJob *ret_job, json_t **ret_msg) {
        WorkerJob j = job_new(s, WORKER_STEP_CLEANUP, 0);
        uint64_t budget = s->cfg->step_timeout_usec / 2;

        j.cleanup = (CleanupJob) {
                .root = s->cfg->root, .downloads_dir = s->downloads_dir,
                .budget_usec = budget < CLEANUP_BUDGET_USEC ? budget : CLEANUP_BUDGET_USEC,
        };
        return job_finish(&j, ret_job, ret_msg);
}

int pipeline_job_discover(Service *s, WorkerJob *ret_job, json_t **ret_msg) {
        const ServiceConfig *c = s->cfg;
        WorkerJob j = job_new(s, WORKER_STEP_DISCOVER, 0);

        j.discover = (DiscoverJob) {
                .s3 = s3_config(s), .bucket = c->bucket, .prefix = c->prefix, .suffix = c->suffix,
                .select = c->select, .pointer_key = c->pointer_key, .pointer_etag = s->state->pointer_etag,
                .fleet = fleet_discover_job(s),
        };
        return job_finish(&j, ret_job, ret_msg);
}

int pipeline_job_report(Service *s, WorkerJob *ret_job, json_t **ret_msg) {
        _cleanup_free_ char *status = NULL, *bad_sha = NULL, *bad_body = NULL;
        const ServiceConfig *c = s->cfg;
        WorkerJob j = job_new(s, WORKER_STEP_REPORT, 0);
        int r;

        r = fleet_report_fields(s, &status, &bad_sha, &bad_body);
        if (r < 0)
                return r;
        j.report = (ReportJob) {
                .s3 = s3_config(s), .bucket = c->bucket, .fleet_prefix = c->fleet_prefix,
                .host_id = fleet_host_id(s), .status = status, .bad_sha = bad_sha, .bad_body = bad_body,
        };
        return job_finish(&j, ret_job, ret_msg);
}

int pipeline_job_fetch(Service *s, const Target *t, WorkerJob *ret_job, json_t **ret_msg) {
        const ServiceConfig *c = s->cfg;
        WorkerJob j = job_new(s, WORKER_STEP_FETCH, c->max_artifact_size + 65536);

        j.fetch = (FetchJob) {
                .s3 = s3_config(s), .bucket = c->bucket, .key = t->key, .sha = t->sha, .suffix = c->suffix,
                .etag = t->etag, .downloads_dir = s->downloads_dir, .checksum = c->checksum,
                .public_key = c->public_key, .max_artifact_size = c->max_artifact_size, .resume = true,
        };
        return job_finish(&j, ret_job, ret_msg);
}

/* The archive is where fetch put it, owned by the user fetch ran as: the
 * worker opens it by name and checks that owner (the worker's result says
 * nothing about where it is). */
int pipeline_job_unpack(Service *s, char *sha, WorkerJob *ret_job, json_t **ret_msg) {
        const ServiceConfig *c = s->cfg;
        WorkerJob j = job_new(s, WORKER_STEP_UNPACK, c->max_unpacked_size);
        WorkerUser fetch_user = step_user(s, WORKER_STEP_FETCH);

        j.unpack = (UnpackJob) {
                .downloads_dir = s->downloads_dir, .sha = sha, .suffix = c->suffix,
                .download_uid = fetch_user.set ? fetch_user.uid : geteuid(),
                .releases_dir = s->releases_dir, .max_unpacked_size = c->max_unpacked_size,
                .max_entries = c->max_entries,
        };
        return job_finish(&j, ret_job, ret_msg);
}

int pipeline_job_activate(Service *s, char *sha, WorkerJob *ret_job, json_t **ret_msg) {
        const ServiceConfig *c = s->cfg;
        WorkerJob j = job_new(s, WORKER_STEP_ACTIVATE, 0);

        j.activate = (ActivateJob) {
                .root = c->root, .sha = sha, .pre_activate = c->pre_activate,
                .post_activate = c->post_activate, .hook_timeout_usec = c->step_timeout_usec,
        };
        return job_finish(&j, ret_job, ret_msg);
}

int pipeline_job_restart(Service *s, char *sha, WorkerJob *ret_job, json_t **ret_msg) {
        const ServiceConfig *c = s->cfg;
        WorkerJob j = job_new(s, WORKER_STEP_RESTART, 0);

        j.restart = (RestartJob) {
                .root = c->root, .sha = sha, .unit = c->unit, .restart_mode = c->restart_mode,
                .health_url = c->health_url, .health_command = c->health_command,
                .health_settle_usec = c->health_settle_usec, .health_timeout_usec = c->health_timeout_usec,
        };
        return job_finish(&j, ret_job, ret_msg);
}

int pipeline_job_prune(Service *s, WorkerJob *ret_job, json_t **ret_msg) {
        ServiceState *st = s->state;
        char *protect[] = { st->current, st->previous, st->pinned };
        WorkerJob j = job_new(s, WORKER_STEP_PRUNE, 0);

        j.prune = (PruneJob) {
                .root = s->cfg->root, .downloads_dir = s->downloads_dir, .keep = s->cfg->keep_releases,
        };
        for (size_t i = 0; i < ELEMENTSOF(protect); i++)
                if (protect[i])
                        snprintf(j.prune.protect[j.prune.n_protect++], sizeof j.prune.protect[0],
                                 "%s", protect[i]);
        return job_finish(&j, ret_job, ret_msg);
}
