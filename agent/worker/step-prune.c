/* step-prune.c: keep the newest keep_releases releases, never current,
 * previous or any sha the supervisor protects; drop verified downloads
 * that were unpacked (partial .part files stay for a resume). Root. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "common/fs-util.h"
#include "common/log.h"
#include "worker/steps.h"
#include "common/util.h"

#define PRUNE_MAX_RELEASES 4096

typedef struct Release {
        char sha[41];
        struct timespec mtime;
} Release;

static int newest_first(const void *a, const void *b) {
        const Release *x = a, *y = b;

        if (x->mtime.tv_sec != y->mtime.tv_sec)
                return x->mtime.tv_sec < y->mtime.tv_sec ? 1 : -1;
        if (x->mtime.tv_nsec != y->mtime.tv_nsec)
                return x->mtime.tv_nsec < y->mtime.tv_nsec ? 1 : -1;
        return strcmp(y->sha, x->sha);
}

/* Collect releases/<sha> directories (staging dirs start with '.'). */
static int list_releases(int releases_fd, Release *out, size_t max, size_t *ret_n) {
        _cleanup_(closedirp) DIR *d = opendir_at(releases_fd);
        struct dirent *de;
        size_t n = 0;

        if (!d)
                return -errno;
        while ((de = readdir(d)) && n < max) {
                struct stat st;
                if (!sha_is_valid(de->d_name) ||
                    fstatat(releases_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                memcpy(out[n].sha, de->d_name, strlen(de->d_name) + 1); /* <= 40 */
                out[n++].mtime = st.st_mtim;
        }
        *ret_n = n;
        return 0;
}

/* Rename first, delete second: a prune killed half-way must never leave a
 * half-deleted releases/<sha> that a later deploy of that sha would take
 * for complete. Leftover .trash-* dirs go on the next prune. */
static int remove_release(int releases_fd, const char *sha) {
        char trash[80];
        uint64_t rnd;

        if (getrandom(&rnd, sizeof rnd, 0) != sizeof rnd)
                return -EIO;
        snprintf(trash, sizeof trash, ".trash-%.40s-%016llx", sha, (unsigned long long) rnd);
        if (renameat(releases_fd, sha, releases_fd, trash) < 0)
                return -errno;
        return rm_rf_at(releases_fd, trash);
}

static bool is_protected(const PruneJob *j, const char *sha) {
        for (size_t i = 0; i < j->n_protect; i++)
                if (streq(j->protect[i], sha))
                        return true;
        return false;
}

static int prune_releases(int releases_fd, const PruneJob *j, uint64_t *ret_removed) {
        static Release rel[PRUNE_MAX_RELEASES];
        size_t n = 0, kept = 0;
        int r;

        r = list_releases(releases_fd, rel, ELEMENTSOF(rel), &n);
        if (r < 0)
                return r;
        qsort(rel, n, sizeof rel[0], newest_first);
        for (size_t i = 0; i < n; i++) {
                if (is_protected(j, rel[i].sha) || kept < j->keep) {
                        kept++;
                        continue;
                }
                r = remove_release(releases_fd, rel[i].sha);
                if (r < 0)
                        return r;
                (*ret_removed)++;
        }
        return 0;
}

/* Verified archives are only needed until they are unpacked. */
static int prune_downloads(int downloads_fd) {
        _cleanup_(closedirp) DIR *d = opendir_at(downloads_fd);
        struct dirent *de;

        if (!d)
                return -errno;
        while ((de = readdir(d)))
                if (de->d_name[0] != '.' && !strstr(de->d_name, ".part") && de->d_type == DT_REG)
                        (void) unlinkat(downloads_fd, de->d_name, 0);
        return 0;
}

int step_prune(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error) {
        const PruneJob *j = &job->prune;
        _cleanup_close_ int releases_fd = -1, downloads_fd = -1;
        char path[4096];
        int r;

        snprintf(path, sizeof path, "%s/releases", j->root);
        releases_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (releases_fd < 0)
                return error_set(ret_error, -errno, "open %s: %s", path, strerror(errno));
        downloads_fd = open(j->downloads_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        r = worker_drop_privileges(w);
        if (r < 0)
                return error_set(ret_error, r, "cannot drop privileges");
        (void) rm_rf_prefixed_at(releases_fd, ".trash-");
        ret->prune = (PruneResult) {};
        r = prune_releases(releases_fd, j, &ret->prune.removed);
        if (r < 0)
                return error_set(ret_error, r, "pruning %s: %s", path, strerror(-r));
        if (downloads_fd >= 0)
                (void) prune_downloads(downloads_fd);
        return 0;
}
