/* step-unpack.c: the unpack step (docs/design.md, "Steps"). As root it
 * opens the verified archive (by name in the downloads dir, see
 * open_archive()) and ROOT/releases, clears staging dirs left by a killed
 * run and creates a fresh .staging-<sha>-XXXXXX owned by the job's run_as
 * user; then it drops privileges, extracts with unpack_archive() and renames
 * the staging dir to releases/<sha>. A release that already exists is
 * reused: renames only ever publish complete trees made durable by one
 * syncfs() (see publish()). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <stddef.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "common/fs-space.h"
#include "common/fs-util.h"
#include "common/log.h"
#include "worker/steps.h"
#include "artifact/unpack.h"
#include "common/util.h"
#include "worker/runtime.h"
#include "worker/confine.h"

#define STAGING_PREFIX ".staging-"
#define STAGING_NAME_MAX 64
#define STAGING_TRIES 16
#define ARCHIVE_NAME_MAX 256

/* The job, with the names derived from it. */
typedef struct Unpack {
        const char *downloads_dir;
        char archive[ARCHIVE_NAME_MAX]; /* <sha><suffix> in downloads_dir */
        uid_t download_uid;             /* who fetch ran as: the archive's only owner */
        const char *releases_dir;
        const char *sha;
        char release[PATH_MAX];        /* releases_dir/sha, for messages */
        UnpackLimits limits;
        bool chown;                    /* hand staging and releases to uid:gid */
        uid_t uid;
        gid_t gid;
        uint64_t need;                 /* estimated unpacked size, 0 when unknown */
        uint64_t free_before;          /* free space under releases_dir before the unpack */
} Unpack;

/* Paths are absolute and the sha valid: the decoder checked. */
static int unpack_from_job(const WorkerJob *job, Unpack *j, char **ret_error) {
        const UnpackJob *u = &job->unpack;
        size_t n = strlen(u->releases_dir);

        *j = (Unpack) {
                .downloads_dir = u->downloads_dir,
                .download_uid = u->download_uid,
                .releases_dir = u->releases_dir,
                .sha = u->sha,
                .limits = { .max_unpacked_size = u->max_unpacked_size, .max_entries = u->max_entries },
                /* the worker is about to become run_as: it gets the staging dir */
                .chown = job->run_as.set && geteuid() == 0,
                .uid = job->run_as.uid,
                .gid = job->run_as.gid,
        };
        if (snprintf(j->archive, sizeof j->archive, "%s%s", u->sha, u->suffix) >= (int) sizeof j->archive)
                return error_set(ret_error, -ENAMETOOLONG, "job: suffix too long");
        while (n > 1 && j->releases_dir[n - 1] == '/')
                n--;
        if (n >= PATH_MAX ||
            snprintf(j->release, sizeof j->release, "%.*s/%s", (int) n, j->releases_dir, j->sha) >=
                    (int) sizeof j->release)
                return error_set(ret_error, -ENAMETOOLONG, "job: releases_dir too long");
        return 0;
}

/* Root opens what an unprivileged fetch worker left behind: by name in the
 * directory the supervisor chose, never through a link (O_NOFOLLOW), never
 * blocking on a planted FIFO (O_NONBLOCK), and only a regular file with a
 * single link owned by the user fetch ran as. Anything else could be a
 * root-only file that fetch pointed at. */
static int open_archive(const Unpack *j, int *ret_fd, char **ret_error) {
        _cleanup_close_ int dir_fd = -1, fd = -1;
        struct stat st;

        dir_fd = open(j->downloads_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dir_fd < 0)
                return error_set(ret_error, -errno, "open %s: %m", j->downloads_dir);
        fd = openat(dir_fd, j->archive, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0 && errno == ELOOP)
                return error_set(ret_error, -ELOOP, "download %s in %s is not a regular file (a symlink)",
                                 j->archive, j->downloads_dir);
        if (fd < 0)
                return error_set(ret_error, -errno, "open %s/%s: %m", j->downloads_dir, j->archive);
        if (fstat(fd, &st) < 0)
                return error_set(ret_error, -errno, "stat %s/%s: %m", j->downloads_dir, j->archive);
        if (!S_ISREG(st.st_mode) || st.st_nlink != 1)
                return error_set(ret_error, -EPERM, "download %s in %s is not a regular file with one link",
                                 j->archive, j->downloads_dir);
        if (st.st_uid != j->download_uid)
                return error_set(ret_error, -EPERM, "download %s in %s is owned by uid %u, not by fetch's uid %u",
                                 j->archive, j->downloads_dir, (unsigned) st.st_uid, (unsigned) j->download_uid);
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* Only the last component is created: a missing ROOT is a setup error (an
 * operator who removed it meant it; docs/design.md, "Failure handling").
 * O_NOFOLLOW: releases must not be a link planted to get a chown. */
static int open_releases(const Unpack *j, int *ret_fd, char **ret_error) {
        char space[FS_SPACE_TEXT_MAX];
        int fd;

        if (mkdir(j->releases_dir, 0755) < 0 && errno != EEXIST) {
                int r = -errno;

                if (r == -ENOENT)
                        return error_set(ret_error, r, "mkdir %s: the service root is gone (%s): "
                                         "not re-created; restore it or change root in the config",
                                         j->releases_dir, strerror(-r));
                fs_space_describe(j->releases_dir, 0, space);
                return error_set(ret_error, r, "mkdir %s: %s (%s)", j->releases_dir, strerror(-r), space);
        }
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
static int release_exists(const Unpack *j, int releases_fd, char **ret_error) {
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
static int create_staging(const Unpack *j, int releases_fd, char name[static STAGING_NAME_MAX],
                          char **ret_error) {
        for (unsigned i = 0; i < STAGING_TRIES; i++) {
                char suffix[7];

                if (random_suffix(suffix) < 0)
                        return error_set(ret_error, -EIO, "getrandom failed");
                snprintf(name, STAGING_NAME_MAX, STAGING_PREFIX "%s-%s", j->sha, suffix);
                if (mkdirat(releases_fd, name, 0700) >= 0)
                        return 0;
                if (errno != EEXIST) {
                        char space[FS_SPACE_TEXT_MAX];
                        int r = -errno;

                        fs_space_describe_fd(releases_fd, j->releases_dir, 0, space);
                        return error_set(ret_error, r, "mkdir %s/%s: %s (%s)", j->releases_dir, name,
                                         strerror(-r), space);
                }
        }
        return error_set(ret_error, -EEXIST, "no free staging name in %s", j->releases_dir);
}

/* The worker is about to become run_as: it must own the staging dir and be
 * able to rename it inside releases. */
static int hand_over(const Unpack *j, int releases_fd, int staging_fd, char **ret_error) {
        if (!j->chown)
                return 0;
        if (fchown(staging_fd, j->uid, j->gid) < 0 || fchown(releases_fd, j->uid, j->gid) < 0)
                return error_set(ret_error, -errno, "chown in %s to %u:%u: %m", j->releases_dir,
                                 (unsigned) j->uid, (unsigned) j->gid);
        return 0;
}

/* One syncfs() makes the whole tree durable before the rename publishes it:
 * it writes back every dirty file and directory of the file system and
 * commits the journal, so the per-file fsyncs it replaces (2.8x slower on
 * 12,000 small files, bench/small-files.sh) and the fsync of each directory
 * of the tree add nothing. It also flushes other writers on that file
 * system: a cost paid once per release, not per file. Since Linux 5.8 it
 * reports writeback errors raised after the fd was opened; staging_fd was
 * opened before extraction, so an error on any file of the tree fails here.
 * It runs after the fchmod so the mode is durable too. Only the fsync of
 * releases after the rename stays. */
static int publish(const Unpack *j, int releases_fd, int staging_fd, const char *staging,
                   char **ret_error) {
        if (fchmod(staging_fd, 0755) < 0)
                return error_set(ret_error, -errno, "chmod %s/%s: %m", j->releases_dir, staging);
        if (syncfs(staging_fd) < 0)
                return error_set(ret_error, -errno, "syncfs of %s/%s: %m", j->releases_dir,
                                 staging);
        if (renameat(releases_fd, staging, releases_fd, j->sha) < 0)
                return error_set(ret_error, -errno, "rename %s/%s to %s: %m", j->releases_dir,
                                 staging, j->release);
        if (fsync(releases_fd) < 0)
                return error_set(ret_error, -errno, "fsync %s: %m", j->releases_dir);
        return 0;
}

/* The size the release will take, when the archive records it: gzip keeps
 * the size of what it compressed (mod 2^32) in its last four bytes, for a
 * .tar.gz the tar stream, i.e. the files plus 512 bytes of header each. A
 * gzip of several members records only its last one, so a recorded size
 * below the archive's own is not trusted. A plain tar is its own size. Zip
 * and the other filters: unknown (0), and no pre-flight check. */
static uint64_t estimate_unpacked(int archive_fd) {
        uint8_t head[262], tail[4];
        struct stat st;
        ssize_t n;

        if (fstat(archive_fd, &st) < 0 || st.st_size < 18)
                return 0;
        n = pread(archive_fd, head, sizeof head, 0);
        if (n >= 2 && head[0] == 0x1f && head[1] == 0x8b) {
                uint64_t isize;

                if (pread(archive_fd, tail, sizeof tail, st.st_size - 4) != (ssize_t) sizeof tail)
                        return 0;
                isize = (uint64_t) tail[0] | (uint64_t) tail[1] << 8 | (uint64_t) tail[2] << 16 |
                        (uint64_t) tail[3] << 24;
                return isize >= (uint64_t) st.st_size ? isize : 0;
        }
        if (n == (ssize_t) sizeof head && memcmp(head + 257, "ustar", 5) == 0)
                return (uint64_t) st.st_size;
        return 0;
}

/* Refuse before writing anything when the archive says it will not fit:
 * a full disk is then found in a second instead of after filling it. The
 * write path still reports ENOSPC properly when the size is unknown or the
 * disk fills meanwhile. */
static int preflight(Unpack *j, int archive_fd, char **ret_error) {
        char space[FS_SPACE_TEXT_MAX], need[16];

        j->need = estimate_unpacked(archive_fd);
        if (fs_space_free(j->releases_dir, &j->free_before) < 0)
                j->free_before = UINT64_MAX;
        fs_format_bytes(j->need, need);
        if (j->need == 0 || j->free_before >= j->need) {
                log_debug("pre-flight: %s unpacks to %s%s; enough room under %s", j->archive,
                          j->need ? "about " : "", j->need ? need : "an unrecorded size", j->releases_dir);
                return 0;
        }
        fs_space_describe(j->releases_dir, j->need, space);
        return error_set(ret_error, -ENOSPC, "pre-flight check: %s (about %s unpacked, as gzip records it) "
                         "does not fit under %s: %s (%s)", j->archive, need, j->releases_dir,
                         strerror(ENOSPC), space);
}

/* A local failure (full, read-only, I/O error): what, where, why, and the
 * file system as it is now and was before the unpack. */
static int local_failure(const Unpack *j, int releases_fd, const char *staging, int r, const char *why,
                         char **ret_error) {
        char space[FS_SPACE_TEXT_MAX], before[16];

        /* unprivileged by now: through the fd, the path's parents may be closed to us */
        fs_space_describe_fd(releases_fd, j->releases_dir, j->need, space);
        fs_format_bytes(j->free_before, before);
        return error_set(ret_error, r, "%s under %s/%s: %s (%s; %s free before the unpack)",
                         why ?: "extracting", j->releases_dir, staging, strerror(-r), space,
                         j->free_before == UINT64_MAX ? "?" : before);
}

static bool unpack_error_is_bad(int r) {
        return r == -EBADMSG || r == -EFBIG || r == -E2BIG;
}

/* Runs unprivileged from here on; the staging dir is removed on failure. */
static int extract(const Unpack *j, WorkerContext *w, int archive_fd, int releases_fd,
                   int staging_fd, const char *staging, UnpackStats *ret_stats, bool *ret_bad,
                   char **ret_error) {
        _cleanup_free_ char *why = NULL;
        int r;

        confine_allow_writes(staging_fd, releases_fd);
        r = worker_drop_privileges(w);
        if (r < 0)
                return error_set(ret_error, r, "dropping privileges: %s", strerror(-r));
        r = unpack_archive(archive_fd, staging_fd, &j->limits, ret_stats, &why);
        if (r < 0) {
                *ret_bad = unpack_error_is_bad(r);
                if (!*ret_bad)
                        return local_failure(j, releases_fd, staging, r, why, ret_error);
                return error_set(ret_error, r, "%s", why ?: strerror(-r));
        }
        return publish(j, releases_fd, staging_fd, staging, ret_error);
}

static int reuse(const Unpack *j, WorkerContext *w, UnpackResult *ret, char **ret_error) {
        int r;

        r = worker_drop_privileges(w);
        if (r < 0)
                return error_set(ret_error, r, "dropping privileges: %s", strerror(-r));
        *ret = (UnpackResult) { .sha = strdup(j->sha), .reused = true };
        return ret->sha ? 0 : error_set(ret_error, -ENOMEM, "out of memory");
}

int step_unpack(const WorkerJob *job, WorkerContext *w, WorkerResult *ret, bool *ret_bad, char **ret_error) {
        _cleanup_close_ int archive_fd = -1, releases_fd = -1, staging_fd = -1;
        char staging[STAGING_NAME_MAX];
        UnpackStats stats = {};
        Unpack j = {};
        int r;

        if ((r = unpack_from_job(job, &j, ret_error)) < 0 ||
            (r = open_archive(&j, &archive_fd, ret_error)) < 0 ||
            (r = open_releases(&j, &releases_fd, ret_error)) < 0)
                return r;
        remove_stale_staging(releases_fd, j.releases_dir);
        r = release_exists(&j, releases_fd, ret_error);
        if (r != 0)
                return r < 0 ? r : reuse(&j, w, &ret->unpack, ret_error);
        r = preflight(&j, archive_fd, ret_error);
        if (r < 0)
                return r;
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
        ret->unpack = (UnpackResult) { .sha = strdup(j.sha), .entries = stats.entries, .bytes = stats.bytes };
        return ret->unpack.sha ? 0 : error_set(ret_error, -ENOMEM, "out of memory");
}
