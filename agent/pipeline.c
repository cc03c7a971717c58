/* pipeline.c: the supervisor's side of one deploy. It builds each step's
 * job from the config, runs it in a worker, and records what happened in
 * state.json; it never touches the artifact's bytes itself. */
#define _GNU_SOURCE
#include "pipeline.h"

#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fs-util.h"
#include "job.h"
#include "log.h"
#include "state.h"
#include "util.h"
#include "worker.h"

#define WORKER_AS_LIMIT (UINT64_C(1) << 30)

typedef struct Target {
        char *sha;
        char *key;
        char *etag;
        uint64_t last_modified_usec;
} Target;

typedef struct Deploy {
        const Config *cfg;
        const ServiceConfig *svc;
        const char *name;
        char state_path[PATH_MAX];
        char downloads_dir[PATH_MAX];
        char releases_dir[PATH_MAX];
        ServiceState *state;
        bool drop;                     /* running as root: workers switch users */
        uid_t worker_uid, owner_uid;
        gid_t worker_gid, owner_gid;
        Target target;
        uint64_t progress_mark;
} Deploy;

static void target_done(Target *t) {
        free(t->sha);
        free(t->key);
        free(t->etag);
        *t = (Target) {};
}

/* ---- users ---- */

static int resolve_user(const char *spec, uid_t *ret_uid, gid_t *ret_gid) {
        _cleanup_free_ char *user = strdup(spec);
        char *group;
        struct passwd *pw;
        struct group *gr;

        if (!user)
                return -ENOMEM;
        group = strchr(user, ':');
        if (group)
                *group++ = '\0';
        pw = getpwnam(user);
        if (!pw)
                return -ESRCH;
        *ret_uid = pw->pw_uid;
        *ret_gid = pw->pw_gid;
        if (group) {
                gr = getgrnam(group);
                if (!gr)
                        return -ESRCH;
                *ret_gid = gr->gr_gid;
        }
        return 0;
}

static int resolve_users(Deploy *d) {
        const char *owner = d->svc->owner ?: d->cfg->agent.worker_user;

        d->drop = geteuid() == 0;
        if (!d->drop)
                return 0;
        if (resolve_user(d->cfg->agent.worker_user, &d->worker_uid, &d->worker_gid) < 0)
                return log_error_errno(-ESRCH, "%s: worker_user \"%s\" does not exist", d->name,
                                       d->cfg->agent.worker_user);
        if (resolve_user(owner, &d->owner_uid, &d->owner_gid) < 0)
                return log_error_errno(-ESRCH, "%s: owner \"%s\" does not exist", d->name, owner);
        if (d->worker_uid == 0 || d->owner_uid == 0)
                return log_error_errno(-EPERM, "%s: workers must not run as root (worker_user/owner)", d->name);
        return 0;
}

/* ---- directories ---- */

static int prepare_dirs(Deploy *d) {
        const char *state_dir = d->cfg->agent.state_dir;
        int r;

        snprintf(d->state_path, sizeof d->state_path, "%s/%s/state.json", state_dir, d->name);
        snprintf(d->downloads_dir, sizeof d->downloads_dir, "%s/%s/downloads", state_dir, d->name);
        snprintf(d->releases_dir, sizeof d->releases_dir, "%s/releases", d->svc->root);
        if ((r = mkdir_p(d->downloads_dir, 0750)) < 0 || (r = mkdir_p(d->svc->root, 0755)) < 0)
                return log_error_errno(r, "%s: creating %s or %s: %m", d->name, d->downloads_dir, d->svc->root);
        if (d->drop && chown(d->downloads_dir, d->worker_uid, d->worker_gid) < 0)
                return log_error_errno(-errno, "%s: chown %s: %m", d->name, d->downloads_dir);
        return 0;
}

/* ---- jobs ---- */

static json_t *job_new(const Deploy *d, bool unprivileged, uid_t uid, gid_t gid, uint64_t fsize) {
        uint64_t timeout_sec = d->svc->step_timeout_usec / USEC_PER_SEC;
        json_t *job = json_pack("{s:s,s:i,s:{s:I,s:I}}", "service", d->name,
                                "log_level", log_get_max_level(),
                                "limits", "cpu_sec", (json_int_t) timeout_sec, "nofile", (json_int_t) 256);
        json_t *limits = json_object_get(job, "limits");

        if (!job)
                return NULL;
        if (unprivileged) {
                json_object_set_new(limits, "as_bytes", json_integer((json_int_t) WORKER_AS_LIMIT));
                if (d->drop)
                        json_object_set_new(job, "run_as", json_pack("{s:I,s:I}", "uid", (json_int_t) uid,
                                                                     "gid", (json_int_t) gid));
        }
        if (fsize > 0)
                json_object_set_new(limits, "fsize_bytes", json_integer((json_int_t) fsize));
        return job;
}

static json_t *job_discover(const Deploy *d) {
        json_t *job = job_new(d, true, d->worker_uid, d->worker_gid, 0);

        if (job && json_object_update_new(job, json_pack("{s:o,s:s,s:s,s:s,s:s,s:s?}",
                        "s3", job_s3_to_json(&d->cfg->s3), "bucket", d->svc->bucket,
                        "prefix", d->svc->prefix, "suffix", d->svc->suffix,
                        "select", select_mode_to_string(d->svc->select),
                        "pointer_key", d->svc->pointer_key)) < 0)
                return json_decref(job), NULL;
        return job;
}

static json_t *job_fetch(const Deploy *d) {
        const ServiceConfig *s = d->svc;
        json_t *job = job_new(d, true, d->worker_uid, d->worker_gid, s->max_artifact_size + 65536);

        if (job && json_object_update_new(job, json_pack("{s:o,s:s,s:s,s:s,s:s,s:s?,s:s,s:s,s:s?,s:I}",
                        "s3", job_s3_to_json(&d->cfg->s3), "bucket", s->bucket, "key", d->target.key,
                        "sha", d->target.sha, "suffix", s->suffix, "etag", d->target.etag,
                        "downloads_dir", d->downloads_dir, "checksum", checksum_mode_to_string(s->checksum),
                        "public_key", s->public_key, "max_artifact_size", (json_int_t) s->max_artifact_size)) < 0)
                return json_decref(job), NULL;
        return job;
}

static json_t *job_unpack(const Deploy *d, const char *archive) {
        const ServiceConfig *s = d->svc;
        json_t *job = job_new(d, true, d->owner_uid, d->owner_gid, s->max_unpacked_size);

        if (job && json_object_update_new(job, json_pack("{s:s,s:s,s:s,s:I,s:I}",
                        "archive", archive, "releases_dir", d->releases_dir, "sha", d->target.sha,
                        "max_unpacked_size", (json_int_t) s->max_unpacked_size,
                        "max_entries", (json_int_t) s->max_entries)) < 0)
                return json_decref(job), NULL;
        return job;
}

static json_t *job_activate(const Deploy *d) {
        const ServiceConfig *s = d->svc;
        json_t *job = job_new(d, false, 0, 0, 0);

        if (job && json_object_update_new(job, json_pack("{s:s,s:s,s:s?,s:s?,s:I}",
                        "root", s->root, "sha", d->target.sha, "pre_activate", s->pre_activate,
                        "post_activate", s->post_activate,
                        "hook_timeout_usec", (json_int_t) s->step_timeout_usec)) < 0)
                return json_decref(job), NULL;
        return job;
}

static json_t *job_prune(const Deploy *d) {
        json_t *job = job_new(d, false, 0, 0, 0);
        json_t *protect = json_array();

        if (d->state->current)
                json_array_append_new(protect, json_string(d->state->current));
        if (d->state->previous)
                json_array_append_new(protect, json_string(d->state->previous));
        if (job && json_object_update_new(job, json_pack("{s:s,s:s,s:I,s:o}", "root", d->svc->root,
                        "downloads_dir", d->downloads_dir, "keep", (json_int_t) d->svc->keep_releases,
                        "protect", protect)) < 0)
                return json_decref(job), NULL;
        return job;
}

/* ---- running steps ---- */

static void on_progress(uint64_t bytes, uint64_t total, void *userdata) {
        Deploy *d = userdata;
        uint64_t quarter;

        if (total == 0)
                return;
        quarter = bytes * 4 / total;
        if (quarter > d->progress_mark) {
                d->progress_mark = quarter;
                log_info("%s: fetch: %llu of %llu bytes (%llu%%)", d->name, (unsigned long long) bytes,
                         (unsigned long long) total, (unsigned long long) (bytes * 100 / total));
        }
}

static int save_state(Deploy *d) {
        int r = state_save(d->state, d->state_path);

        if (r < 0)
                log_error_errno(r, "%s: saving %s: %m", d->name, d->state_path);
        return r;
}

static int set_in_flight(Deploy *d, const char *step) {
        if (state_set(&d->state->in_flight_step, step) < 0 ||
            state_set(&d->state->in_flight_sha, step ? d->target.sha : NULL) < 0)
                return -ENOMEM;
        return save_state(d);
}

/* Run one step; a failure is logged, recorded, and (when the worker blames
 * the artifact) marks the target bad for this object's ETag. */
static int run_step(Deploy *d, const char *step, json_t *job, json_t **ret_result) {
        _cleanup_(worker_outcome_done) WorkerOutcome o = {};
        int r;

        if (!job)
                return log_error_errno(-ENOMEM, "%s: %s: building job: %m", d->name, step);
        r = set_in_flight(d, step);
        if (r < 0)
                return json_decref(job), r;
        d->progress_mark = 0;
        r = worker_run(step, job, d->svc->step_timeout_usec, on_progress, d, &o);
        json_decref(job);
        log_debug("%s: %s worker: peak RSS %llu KiB, CPU %llu ms", d->name, step,
                  (unsigned long long) o.max_rss_kib, (unsigned long long) (o.cpu_usec / USEC_PER_MSEC));
        if (r >= 0 && o.ok) {
                *ret_result = TAKE_PTR(o.result);
                return 0;
        }
        log_error("%s: %s", d->name, o.error);
        (void) state_set(&d->state->last_error, o.error);
        if (o.bad && d->target.sha) {
                log_error("%s: marking %s bad", d->name, d->target.sha);
                (void) state_mark_bad(d->state, d->target.sha, d->target.etag, o.error, now_usec(CLOCK_REALTIME));
                (void) state_add_history(d->state, d->target.sha, d->state->current, "rejected", o.error,
                                         now_usec(CLOCK_REALTIME));
        }
        (void) set_in_flight(d, NULL);
        return r < 0 ? r : -EIO;
}

static int discover(Deploy *d) {
        json_auto_t *res = NULL;
        char when[32];
        int r;

        r = run_step(d, "discover", job_discover(d), &res);
        if (r < 0)
                return r;
        if (!job_bool(res, "found", false) || !sha_is_valid(job_string(res, "sha")) || !job_string(res, "key"))
                return 0;
        d->target.sha = strdup(job_string(res, "sha"));
        d->target.key = strdup(job_string(res, "key"));
        d->target.etag = job_string(res, "etag") ? strdup(job_string(res, "etag")) : NULL;
        d->target.last_modified_usec = job_uint64(res, "last_modified", 0);
        if (!d->target.sha || !d->target.key)
                return -ENOMEM;
        log_info("%s: discover: newest is %s (s3://%s/%s, %s)", d->name, d->target.sha, d->svc->bucket,
                 d->target.key, format_timestamp(d->target.last_modified_usec, when));
        return 1;
}

/* 1: go on with the target; 0: nothing to do (logged why). */
static int should_deploy(Deploy *d) {
        const BadRelease *bad;
        uint64_t now = now_usec(CLOCK_REALTIME);

        if (streq_ptr(d->target.sha, d->state->current)) {
                log_info("%s: %s is already current", d->name, d->target.sha);
                return 0;
        }
        bad = state_find_bad(d->state, d->target.sha, d->target.etag);
        if (bad) {
                log_warning("%s: newest build %s is marked bad (%s); staying on %s", d->name, d->target.sha,
                            strempty(bad->reason), d->state->current ?: "nothing");
                return 0;
        }
        if (d->target.last_modified_usec + d->svc->min_age_usec > now) {
                log_info("%s: %s is younger than min_age; not ready yet", d->name, d->target.sha);
                return 0;
        }
        return 1;
}

static int fetch_and_unpack(Deploy *d) {
        json_auto_t *fetched = NULL, *unpacked = NULL;
        int r;

        r = run_step(d, "fetch", job_fetch(d), &fetched);
        if (r < 0)
                return r;
        log_info("%s: fetch: %s, %lld bytes, sha256 %s verified", d->name, d->target.key,
                 (long long) json_integer_value(json_object_get(fetched, "size")),
                 strempty(job_string(fetched, "sha256")));
        if (!job_string(fetched, "path"))
                return log_error_errno(-EPROTO, "%s: fetch worker returned no path", d->name);
        r = run_step(d, "unpack", job_unpack(d, job_string(fetched, "path")), &unpacked);
        if (r < 0)
                return r;
        log_info("%s: unpack: %s (%lld entries, %lld bytes)", d->name, strempty(job_string(unpacked, "release")),
                 (long long) json_integer_value(json_object_get(unpacked, "entries")),
                 (long long) json_integer_value(json_object_get(unpacked, "bytes")));
        return 0;
}

static int activate(Deploy *d) {
        json_auto_t *res = NULL;
        const char *previous;
        int r;

        r = run_step(d, "activate", job_activate(d), &res);
        if (r < 0)
                return r;
        previous = job_string(res, "previous");
        log_info("%s: activate: current -> releases/%s (was %s)", d->name, d->target.sha, previous ?: "nothing");
        if (state_set(&d->state->previous, previous) < 0 || state_set(&d->state->current, d->target.sha) < 0 ||
            state_set(&d->state->last_error, NULL) < 0 ||
            state_add_history(d->state, d->target.sha, previous, "deployed", job_string(res, "warning"),
                              now_usec(CLOCK_REALTIME)) < 0)
                return -ENOMEM;
        return set_in_flight(d, NULL);
}

static void prune(Deploy *d) {
        json_auto_t *res = NULL;
        size_t n;

        if (run_step(d, "prune", job_prune(d), &res) < 0)
                return; /* logged; a full disk later is better than a failed deploy now */
        n = json_array_size(json_object_get(res, "removed"));
        if (n > 0)
                log_info("%s: prune: removed %zu old release%s", d->name, n, n == 1 ? "" : "s");
        (void) set_in_flight(d, NULL);
}

/* The symlink is the truth; a step left in flight by a killed run is
 * reported and forgotten (its leftovers are cleaned by the next steps). */
static int load_state(Deploy *d) {
        _cleanup_free_ char *error = NULL, *current = NULL;
        _cleanup_close_ int root_fd = open(d->svc->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r;

        r = state_load(d->state_path, &d->state, &error);
        if (r < 0)
                return log_error_errno(r, "%s: %s", d->name, error ?: "cannot load state");
        if (d->state->in_flight_step)
                log_warning("%s: a previous run was interrupted during %s of %s; starting over", d->name,
                            d->state->in_flight_step, strempty(d->state->in_flight_sha));
        if (root_fd >= 0)
                (void) release_link_sha(root_fd, "current", &current);
        if (!streq_ptr(current, d->state->current) && state_set(&d->state->current, current) < 0)
                return -ENOMEM;
        return set_in_flight(d, NULL);
}

static int deploy(Deploy *d) {
        int r;

        r = discover(d);
        if (r < 0)
                return r;
        if (r == 0) {
                if (d->state->current)
                        return log_info("%s: no build under s3://%s/%s; staying on %s", d->name,
                                        d->svc->bucket, d->svc->prefix, d->state->current), 0;
                return log_error_errno(-ENOENT, "%s: no build under s3://%s/%s matches <sha>%s", d->name,
                                       d->svc->bucket, d->svc->prefix, d->svc->suffix);
        }
        if (should_deploy(d) == 0)
                return d->state->current ? 0 : -ENOENT;
        r = fetch_and_unpack(d);
        if (r < 0)
                return r;
        r = activate(d);
        if (r < 0)
                return r;
        prune(d);
        return 0;
}

int pipeline_once(const Config *cfg, const ServiceConfig *svc) {
        Deploy d = { .cfg = cfg, .svc = svc, .name = svc->name };
        int r;

        r = resolve_users(&d);
        if (r >= 0)
                r = prepare_dirs(&d);
        if (r >= 0)
                r = load_state(&d);
        if (r >= 0) {
                d.state->last_poll_usec = now_usec(CLOCK_REALTIME);
                r = deploy(&d);
                (void) save_state(&d);
        }
        target_done(&d.target);
        state_free(d.state);
        return r;
}
