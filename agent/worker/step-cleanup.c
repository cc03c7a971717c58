/* step-cleanup.c: removes what killed steps leave behind, which no later
 * step would: a pass that finds nothing new to deploy runs no unpack and
 * no prune. Leftovers: releases/.staging-* (unpack), releases/.trash-*
 * (prune), .current.tmp-* (activate) and every downloads/<file>.part
 * (fetch) but the newest, the one the next fetch resumes. Time-boxed:
 * what the budget leaves goes at the next pass. Root, like prune. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#include "common/fs-util.h"
#include "common/log.h"
#include "common/util.h"
#include "worker/steps.h"

#define CLEANUP_NAMES_MAX 32           /* names logged; the count has them all */

typedef struct Cleanup {
        uint64_t deadline_usec;        /* CLOCK_MONOTONIC */
        uint64_t count;
} Cleanup;

static bool has_prefix(const char *s, const char *prefix) {
        return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool has_suffix(const char *s, const char *suffix) {
        size_t n = strlen(s), m = strlen(suffix);

        return n >= m && streq(s + n - m, suffix);
}

static void note_removed(Cleanup *c, const char *where, const char *name) {
        /* the names stay here: no result carries a path (protocol/worker-result.h) */
        if (c->count++ < CLEANUP_NAMES_MAX)
                log_info("cleanup: removed %s/%s", where, name);
}

static bool out_of_time(const Cleanup *c) {
        return now_usec(CLOCK_MONOTONIC) >= c->deadline_usec;
}

/* Remove every entry of dirfd whose name starts with prefix. */
static int remove_prefixed(Cleanup *c, int dirfd, const char *where, const char *prefix) {
        _cleanup_(closedirp) DIR *d = opendir_at(dirfd);
        struct dirent *de;
        int r = 0;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                if (!has_prefix(de->d_name, prefix))
                        continue;
                if (out_of_time(c))
                        return -ETIME;
                int k = rm_rf_at_until(dirfd, de->d_name, c->deadline_usec);
                if (k == -ETIME)
                        return k;
                if (k < 0) {
                        log_warning_errno(k, "removing %s/%s: %m", where, de->d_name);
                        r = r < 0 ? r : k;
                        continue;
                }
                note_removed(c, where, de->d_name);
        }
        return r;
}

static bool is_part(const struct dirent *de) {
        return de->d_type == DT_REG && has_suffix(de->d_name, ".part");
}

/* The .part written last: the fetch a kill cut most recently. */
static void newest_part(int downloads_fd, char ret[static NAME_MAX + 1]) {
        _cleanup_(closedirp) DIR *d = opendir_at(downloads_fd);
        struct timespec newest = {};
        struct dirent *de;
        struct stat st;

        ret[0] = '\0';
        while (d && (de = readdir(d))) {
                if (!is_part(de) || fstatat(downloads_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                        continue;
                if (ret[0] && (st.st_mtim.tv_sec < newest.tv_sec ||
                               (st.st_mtim.tv_sec == newest.tv_sec && st.st_mtim.tv_nsec <= newest.tv_nsec)))
                        continue;
                newest = st.st_mtim;
                snprintf(ret, NAME_MAX + 1, "%s", de->d_name);
        }
}

/* Every .part but the newest goes, and every "<part>.etag" note but the
 * newest's (a note whose .part is gone is stale too). */
static int remove_stale_parts(Cleanup *c, int downloads_fd) {
        _cleanup_(closedirp) DIR *d = opendir_at(downloads_fd);
        char keep[NAME_MAX + 1], part[NAME_MAX + 1];
        struct dirent *de;

        if (!d)
                return -errno;
        newest_part(downloads_fd, keep);
        while ((de = readdir(d))) {
                bool note = de->d_type == DT_REG && has_suffix(de->d_name, ".part.etag");
                if (!is_part(de) && !note)
                        continue;
                snprintf(part, sizeof part, "%.*s", (int) (strlen(de->d_name) - (note ? 5 : 0)), de->d_name);
                if (streq(part, keep))
                        continue;
                if (out_of_time(c))
                        return -ETIME;
                if (unlinkat(downloads_fd, de->d_name, 0) < 0) {
                        if (errno != ENOENT)
                                log_warning_errno(-errno, "removing downloads/%s: %m", de->d_name);
                        continue;
                }
                note_removed(c, "downloads", de->d_name);
        }
        return 0;
}

static int open_dir(const char *path) {
        int fd = path ? open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -ENOENT;

        return fd < 0 && path ? -errno : fd;
}

int step_cleanup(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error) {
        const CleanupJob *j = &job->cleanup;
        _cleanup_free_ char *releases = strdup_printf("%s/releases", j->root);
        _cleanup_close_ int root_fd = open_dir(j->root), releases_fd = open_dir(releases),
                            downloads_fd = open_dir(j->downloads_dir);
        Cleanup c = { .deadline_usec = now_usec(CLOCK_MONOTONIC) + j->budget_usec };
        int r = 0;

        if (!releases)
                return error_set(ret_error, -ENOMEM, "out of memory");
        if (root_fd < 0 && root_fd != -ENOENT)
                return error_set(ret_error, root_fd, "open %s: %s", j->root, strerror(-root_fd));
        r = worker_drop_privileges(w);
        if (r < 0)
                return error_set(ret_error, r, "cannot drop privileges");
        if (releases_fd >= 0 && (r = remove_prefixed(&c, releases_fd, "releases", ".staging-")) != -ETIME)
                r = remove_prefixed(&c, releases_fd, "releases", ".trash-");
        if (root_fd >= 0 && r != -ETIME)
                r = remove_prefixed(&c, root_fd, ".", ".current.tmp-");
        if (downloads_fd >= 0 && r != -ETIME)
                r = remove_stale_parts(&c, downloads_fd);
        if (r == -ETIME)
                log_info("cleanup: out of its %llu ms budget; the rest goes at the next pass",
                         (unsigned long long) (j->budget_usec / USEC_PER_MSEC));
        ret->cleanup = (CleanupResult) { .removed = c.count, .complete = r != -ETIME };
        return 0;
}
