/* step-unpack.c: the unpack step (docs/design.md, "Steps"). As root it opens the
 * verified archive and ROOT/releases, clears staging dirs left by a killed
 * run and creates a fresh .staging-<sha>-XXXXXX owned by the job's run_as
 * user; then it drops privileges, extracts with unpack_archive() and renames
 * the staging dir to releases/<sha>. A release that already exists is
 * reused: renames only ever publish complete, fsync'ed trees. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "common/fs-util.h"
#include "protocol/job.h"
#include "common/log.h"
#include "worker/steps.h"
#include "artifact/unpack.h"
#include "common/util.h"
#include "worker/runtime.h"

#define STAGING_PREFIX ".staging-"
#define STAGING_NAME_MAX 64
#define STAGING_TRIES 16
#define DEFAULT_MAX_UNPACKED_SIZE (UINT64_C(8) << 30)
#define DEFAULT_MAX_ENTRIES UINT64_C(200000)

typedef struct UnpackJob {
        const char *archive;
        const char *releases_dir;
        const char *sha;
        char release[PATH_MAX];        /* releases_dir/sha, for the result */
        UnpackLimits limits;
        bool chown;                    /* hand staging and releases to uid:gid */
        uid_t uid;
        gid_t gid;
} UnpackJob;

static bool path_is_absolute(const char *p) {
        return p && p[0] == '/';
}

static int parse_run_as(const json_t *job, UnpackJob *j, char **ret_error) {
        const json_t *run_as = json_object_get(job, "run_as");
        uint64_t uid, gid;

        if (!run_as || geteuid() != 0)
                return 0;
        uid = job_uint64(run_as, "uid", UINT64_MAX);
        gid = job_uint64(run_as, "gid", UINT64_MAX);
        if (uid >= UINT32_MAX || gid >= UINT32_MAX)
                return error_set(ret_error, -EINVAL, "job: run_as needs uid and gid");
        j->chown = true;
        j->uid = (uid_t) uid;
        j->gid = (gid_t) gid;
        return 0;
}

static int parse_job(const json_t *job, UnpackJob *j, char **ret_error) {
        size_t n;

        j->archive = job_string(job, "archive");
        j->releases_dir = job_string(job, "releases_dir");
        j->sha = job_string(job, "sha");
        if (!path_is_absolute(j->archive) || !path_is_absolute(j->releases_dir))
                return error_set(ret_error, -EINVAL, "job: archive and releases_dir must be absolute paths");
        if (!sha_is_valid(j->sha))
                return error_set(ret_error, -EINVAL, "job: invalid sha \"%s\"", strempty(j->sha));
        n = strlen(j->releases_dir);
        while (n > 1 && j->releases_dir[n - 1] == '/')
                n--;
        if (n >= PATH_MAX ||
            snprintf(j->release, sizeof j->release, "%.*s/%s", (int) n, j->releases_dir, j->sha) >=
                    (int) sizeof j->release)
                return error_set(ret_error, -ENAMETOOLONG, "job: releases_dir too long");
        j->limits = (UnpackLimits) {
                .max_unpacked_size = job_uint64(job, "max_unpacked_size", DEFAULT_MAX_UNPACKED_SIZE),
                .max_entries = job_uint64(job, "max_entries", DEFAULT_MAX_ENTRIES),
        };
        return parse_run_as(job, j, ret_error);
}

static int open_archive(const UnpackJob *j, int *ret_fd, char **ret_error) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        fd = open(j->archive, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return error_set(ret_error, -errno, "open %s: %m", j->archive);
        if (fstat(fd, &st) < 0)
                return error_set(ret_error, -errno, "stat %s: %m", j->archive);
        if (!S_ISREG(st.st_mode))
                return error_set(ret_error, -EINVAL, "%s is not a regular file", j->archive);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Only the last component is created: a missing ROOT is a setup error.
 * O_NOFOLLOW: releases must not be a link planted to get a chown. */
static int open_releases(const UnpackJob *j, int *ret_fd, char **ret_error) {
        int fd;

        if (mkdir(j->releases_dir, 0755) < 0 && errno != EEXIST)
                return error_set(ret_error, -errno, "mkdir %s: %m", j->releases_dir);
        fd = open(j->releases_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return error_set(ret_error, -errno, "open %s: %m", j->releases_dir);
        *ret_fd = fd;
        return 0;
}

/* A run killed mid-unpack leaves its staging dir; nothing else may be
 * unpacking into this releases dir now (one pipeline per service). */
static void remove_stale_staging(int releases_fd, const char *releases_dir) {
        int r = rm_rf_prefixed_at(releases_fd, STAGING_PREFIX);

        if (r < 0)
                log_warning_errno(r, "removing stale staging dirs in %s: %m", releases_dir);
        else if (r > 0)
                log_info("removed %d stale staging dir%s in %s", r, r == 1 ? "" : "s", releases_dir);
}

/* 1 when releases/<sha> is already there, 0 when not. */
static int release_exists(const UnpackJob *j, int releases_fd, char **ret_error) {
        int r = dir_exists_at(releases_fd, j->sha);

        if (r == -ENOTDIR)
                return error_set(ret_error, -EEXIST, "%s exists and is not a directory", j->release);
        if (r < 0)
                return error_set(ret_error, r, "stat %s: %s", j->release, strerror(-r));
        return r;
}

static int random_suffix(char buf[static 7]) {
        static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        uint8_t rnd[6];

        if (getrandom(rnd, sizeof rnd, 0) != (ssize_t) sizeof rnd)
                return -EIO;
        for (size_t i = 0; i < sizeof rnd; i++)
                buf[i] = chars[rnd[i] % (sizeof chars - 1)];
        buf[6] = '\0';
        return 0;
}

/* mkdtemp-like, relative to releases_fd; 0700 until it is complete. */
static int create_staging(const UnpackJob *j, int releases_fd, char name[static STAGING_NAME_MAX],
                          char **ret_error) {
        for (unsigned i = 0; i < STAGING_TRIES; i++) {
                char suffix[7];

                if (random_suffix(suffix) < 0)
                        return error_set(ret_error, -EIO, "getrandom failed");
                snprintf(name, STAGING_NAME_MAX, STAGING_PREFIX "%s-%s", j->sha, suffix);
                if (mkdirat(releases_fd, name, 0700) >= 0)
                        return 0;
                if (errno != EEXIST)
                        return error_set(ret_error, -errno, "mkdir %s/%s: %m", j->releases_dir, name);
        }
        return error_set(ret_error, -EEXIST, "no free staging name in %s", j->releases_dir);
}

/* The worker is about to become run_as: it must own the staging dir and be
 * able to rename it inside releases. */
static int hand_over(const UnpackJob *j, int releases_fd, int staging_fd, char **ret_error) {
        if (!j->chown)
                return 0;
        if (fchown(staging_fd, j->uid, j->gid) < 0 || fchown(releases_fd, j->uid, j->gid) < 0)
                return error_set(ret_error, -errno, "chown in %s to %u:%u: %m", j->releases_dir,
                                 (unsigned) j->uid, (unsigned) j->gid);
        return 0;
}

static int publish(const UnpackJob *j, int releases_fd, int staging_fd, const char *staging,
                   char **ret_error) {
        if (fchmod(staging_fd, 0755) < 0)
                return error_set(ret_error, -errno, "chmod %s/%s: %m", j->releases_dir, staging);
        if (renameat(releases_fd, staging, releases_fd, j->sha) < 0)
                return error_set(ret_error, -errno, "rename %s/%s to %s: %m", j->releases_dir,
                                 staging, j->release);
        if (fsync(releases_fd) < 0)
                return error_set(ret_error, -errno, "fsync %s: %m", j->releases_dir);
        return 0;
}

static bool unpack_error_is_bad(int r) {
        return r == -EBADMSG || r == -EFBIG || r == -E2BIG;
}

/* Runs unprivileged from here on; the staging dir is removed on failure. */
static int extract(const UnpackJob *j, WorkerContext *w, int archive_fd, int releases_fd,
                   int staging_fd, const char *staging, UnpackStats *ret_stats, bool *ret_bad,
                   char **ret_error) {
        _cleanup_free_ char *why = NULL;
        int r;

        r = worker_drop_privileges(w);
        if (r < 0)
                return error_set(ret_error, r, "dropping privileges: %s", strerror(-r));
        r = unpack_archive(archive_fd, staging_fd, &j->limits, ret_stats, &why);
        if (r < 0) {
                *ret_bad = unpack_error_is_bad(r);
                return error_set(ret_error, r, "%s", why ?: strerror(-r));
        }
        return publish(j, releases_fd, staging_fd, staging, ret_error);
}

static int reuse(const UnpackJob *j, WorkerContext *w, json_t **ret_result, char **ret_error) {
        json_t *res;
        int r;

        r = worker_drop_privileges(w);
        if (r < 0)
                return error_set(ret_error, r, "dropping privileges: %s", strerror(-r));
        res = json_pack("{s:s,s:b}", "release", j->release, "reused", true);
        if (!res)
                return error_set(ret_error, -ENOMEM, "out of memory");
        *ret_result = res;
        return 0;
}

int step_unpack(const json_t *job, WorkerContext *w, json_t **ret_result, bool *ret_bad, char **ret_error) {
        _cleanup_close_ int archive_fd = -1, releases_fd = -1, staging_fd = -1;
        char staging[STAGING_NAME_MAX];
        UnpackStats stats = {};
        UnpackJob j = {};
        json_t *res;
        int r;

        if ((r = parse_job(job, &j, ret_error)) < 0 ||
            (r = open_archive(&j, &archive_fd, ret_error)) < 0 ||
            (r = open_releases(&j, &releases_fd, ret_error)) < 0)
                return r;
        remove_stale_staging(releases_fd, j.releases_dir);
        r = release_exists(&j, releases_fd, ret_error);
        if (r != 0)
                return r < 0 ? r : reuse(&j, w, ret_result, ret_error);
        r = create_staging(&j, releases_fd, staging, ret_error);
        if (r < 0)
                return r;
        staging_fd = openat(releases_fd, staging, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (staging_fd < 0)
                r = error_set(ret_error, -errno, "open %s/%s: %m", j.releases_dir, staging);
        else if ((r = hand_over(&j, releases_fd, staging_fd, ret_error)) >= 0)
                r = extract(&j, w, archive_fd, releases_fd, staging_fd, staging, &stats, ret_bad, ret_error);
        if (r < 0) {
                (void) rm_rf_at(releases_fd, staging);
                return r;
        }
        res = json_pack("{s:s,s:I,s:I}", "release", j.release, "entries", (json_int_t) stats.entries,
                        "bytes", (json_int_t) stats.bytes);
        if (!res)
                return error_set(ret_error, -ENOMEM, "out of memory");
        *ret_result = res;
        return 0;
}
