/* unpack.c: extract an untrusted archive into an empty directory with
 * libarchive, refusing anything that could escape it or exhaust the host.
 *
 * libarchive's SECURE_* flags only stop entries being written through
 * symlinks, ".." and absolute paths; they do not check a symlink's own
 * target, count entries or bytes, or refuse devices and setuid bits. So every
 * header is checked here before it reaches archive_write_disk, and data is
 * counted block by block as it streams.
 *
 * Policy beyond docs/design.md, "Steps" (unpack):
 * - hardlinks are allowed only to a regular file already extracted inside the
 *   tree (the target passes the same path check); anything else is refused.
 * - a symlink target may climb with leading ".." components only ("../a/b",
 *   not "a/../../b"): a ".." after a component that is itself a symlink would
 *   defeat the lexical check.
 * - setuid/setgid regular files are refused; on directories those bits are
 *   only dropped. Kept permission bits are mode & 0755, plus owner read.
 * - "." and "./" (the root itself) are skipped; duplicate entries are refused.
 *
 * Errors: -EBADMSG when the archive is hostile or corrupt, -EFBIG past
 * max_unpacked_size, -E2BIG past max_entries; any other -errno is a local
 * failure (ENOSPC, EACCES, EIO, ENOMEM, ...). The caller marks the build bad
 * for the first three only. For a local failure of one entry ret_error says
 * only what was being done (`writing "data/blob.bin"`, or `reading`): the caller knows
 * where (the staging dir) and adds that, the errno text and the file
 * system's space. */
#define _GNU_SOURCE
#include <stddef.h>     /* unpack.h uses size_t without it */

#include "artifact/unpack.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include "artifact/unpack-paths.h"
#include "common/util.h"

#define UNPACK_PATH_LENGTH_DEFAULT 4096
#define UNPACK_DEPTH_DEFAULT 64
/* One read() per MiB of archive, not per 64 KiB; smaller archives get a
 * buffer their size. */
#define UNPACK_READ_BLOCK_MAX (1024 * 1024)
#define UNPACK_READ_BLOCK_MIN (64 * 1024)
#define UNPACK_NAME_SHOWN 200

static void archive_freep(struct archive **a) {
        if (*a)
                archive_free(*a);
}
#define _cleanup_archive_ _cleanup_(archive_freep)

static void freelocalep(locale_t *l) {
        if (*l != (locale_t) 0)
                freelocale(*l);
}

typedef struct Unpack {
        struct archive *reader;
        struct archive *writer;
        int dir_fd;
        UnpackLimits limits;
        UnpackStats stats;
        uint64_t written;              /* entries other than the root itself */
        char **ret_error;
        UnpackPaths paths;             /* what is in the tree; see track_entry() */
        bool tracking;                 /* false: libarchive's SECURE_SYMLINKS and a stat() per entry */
        char *norm;                    /* the entry's normalized path */
        char *parent;                  /* the last entry's parent, checked: "" none yet */
} Unpack;

/* Walks the components of a path, skipping empty and "." ones. Returns the
 * length of the next component (0 at the end) and advances *p past it. */
static size_t next_component(const char **p, const char **ret_start) {
        const char *s = *p;
        size_t n;

        for (;;) {
                while (*s == '/')
                        s++;
                n = strcspn(s, "/");
                if (n == 1 && s[0] == '.') {
                        s++;
                        continue;
                }
                break;
        }
        *ret_start = s;
        *p = s + n;
        return n;
}

static bool component_is_dotdot(const char *s, size_t n) {
        return n == 2 && s[0] == '.' && s[1] == '.';
}

int unpack_check_path(const char *path, size_t max_len, unsigned max_depth) {
        const char *p = path, *c;
        unsigned depth = 0;
        size_t n;

        if (isempty(path) || path[0] == '/' || strlen(path) > max_len)
                return -EINVAL;
        while ((n = next_component(&p, &c)) > 0) {
                if (component_is_dotdot(c, n))
                        return -EINVAL;
                if (++depth > max_depth)
                        return -EINVAL;
        }
        return 0;
}

bool unpack_link_target_inside(const char *entry_path, const char *target) {
        const char *p = entry_path, *c;
        bool climbing = true;
        long depth = -1;       /* the link itself is not a directory level */
        size_t n;

        if (isempty(entry_path) || isempty(target) || entry_path[0] == '/' || target[0] == '/')
                return false;
        while ((n = next_component(&p, &c)) > 0) {
                if (component_is_dotdot(c, n))
                        return false;
                depth++;
        }
        if (depth < 0)
                return false;  /* the entry is the root itself */
        p = target;
        while ((n = next_component(&p, &c)) > 0) {
                if (!component_is_dotdot(c, n)) {
                        climbing = false;
                        continue;
                }
                if (!climbing || --depth < 0)
                        return false;
        }
        return true;
}

/* The entry's name for messages: printable, bounded (log lines must not be
 * forgeable by a file name). */
static void shown_name(const char *path, char buf[static UNPACK_NAME_SHOWN + 4]) {
        size_t n = path ? strnlen(path, UNPACK_NAME_SHOWN + 1) : 0, i;

        for (i = 0; i < n && i < UNPACK_NAME_SHOWN; i++)
                buf[i] = isprint((unsigned char) path[i]) && path[i] != '"' ? path[i] : '?';
        if (n > UNPACK_NAME_SHOWN)
                buf[i++] = '.', buf[i++] = '.', buf[i++] = '.';
        buf[i] = '\0';
}

static int entry_error(Unpack *u, int r, const char *path, const char *fmt, ...) _printf_(4, 5);
static int entry_error(Unpack *u, int r, const char *path, const char *fmt, ...) {
        _cleanup_free_ char *reason = NULL;
        char name[UNPACK_NAME_SHOWN + 4];
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&reason, fmt, ap) < 0)
                reason = NULL;
        va_end(ap);
        shown_name(path, name);
        return error_set(u->ret_error, r, "entry \"%s\": %s", name, strempty(reason));
}

static bool errno_is_local(int e) {
        return e == ENOSPC || e == EDQUOT || e == EIO || e == EROFS || e == EACCES ||
               e == EPERM || e == ENOMEM || e == EMFILE || e == ENFILE || e == EINTR;
}

/* Maps a libarchive failure: local I/O errors keep their errno, everything
 * else (format errors, libarchive's own security refusals) is the archive's
 * fault. */
static int archive_failure(Unpack *u, struct archive *a, const char *path) {
        int e = archive_errno(a);
        int r = e == EFBIG ? -EFBIG : errno_is_local(e) ? -e : -EBADMSG;
        const char *s = archive_error_string(a);

        if (!s)
                s = "unknown libarchive error";
        /* libarchive says only "Write failed": the errno is the reason, and
         * the caller adds where (docs/design.md, "Failure handling"). */
        if (path && r != -EBADMSG && r != -EFBIG) {
                char name[UNPACK_NAME_SHOWN + 4];

                shown_name(path, name);
                return error_set(u->ret_error, r, "%s \"%s\"", a == u->writer ? "writing" : "reading", name);
        }
        if (path)
                return entry_error(u, r, path, "%s", s);
        return error_set(u->ret_error, r, "archive: %s", s);
}

static int check_type(Unpack *u, struct archive_entry *e, const char *path) {
        switch (archive_entry_filetype(e)) {
        case AE_IFREG:
        case AE_IFDIR:
        case AE_IFLNK:
                return 0;
        case AE_IFCHR:
        case AE_IFBLK:
                return entry_error(u, -EBADMSG, path, "device nodes are not allowed");
        case AE_IFIFO:
                return entry_error(u, -EBADMSG, path, "fifos are not allowed");
        case AE_IFSOCK:
                return entry_error(u, -EBADMSG, path, "sockets are not allowed");
        default:
                return entry_error(u, -EBADMSG, path, "unsupported entry type");
        }
}

static int check_hardlink(Unpack *u, const char *path, const char *target) {
        struct stat st;

        if (unpack_check_path(target, u->limits.max_path_length, u->limits.max_depth) < 0)
                return entry_error(u, -EBADMSG, path, "hardlink target escapes the release");
        if (fstatat(u->dir_fd, target, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                return entry_error(u, -EBADMSG, path,
                                   "hardlink target is not a regular file extracted before it");
        return 0;
}

static int check_symlink(Unpack *u, const char *path, const char *target) {
        if (!target || strlen(target) > u->limits.max_path_length)
                return entry_error(u, -EBADMSG, path, "symlink target missing or too long");
        if (!unpack_link_target_inside(path, target))
                return entry_error(u, -EBADMSG, path, "symlink target escapes the release");
        return 0;
}

/* Duplicates are refused: with NO_OVERWRITE libarchive would keep the first
 * copy where tar keeps the last. A directory may be named after libarchive
 * created it as a parent. The normalized path is what is looked at: with a
 * trailing "/" or "/." fstatat() follows a symlink even with
 * AT_SYMLINK_NOFOLLOW, so "s/" over a symlink to a directory would pass as a
 * directory named again. */
static int check_duplicate(Unpack *u, struct archive_entry *e, const char *path) {
        size_t n = u->limits.max_path_length + 1;
        _cleanup_free_ char *norm = malloc(n);
        struct stat st;

        if (!norm)
                return error_set(u->ret_error, -ENOMEM, "out of memory");
        if (unpack_paths_normalize(path, norm, n) < 0)
                return entry_error(u, -EBADMSG, path, "path longer than %zu bytes",
                                   u->limits.max_path_length);
        if (fstatat(u->dir_fd, norm, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return 0;      /* absent, or libarchive will say why not */
        if (S_ISDIR(st.st_mode) && archive_entry_filetype(e) == AE_IFDIR &&
            !archive_entry_hardlink(e) && !archive_entry_symlink(e))
                return 0;
        return entry_error(u, -EBADMSG, path, "duplicate entry");
}

#define WRITER_OPTIONS (ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | \
                        ARCHIVE_EXTRACT_NO_OVERWRITE | ARCHIVE_EXTRACT_TIME)

/* Back to checking on disk: libarchive's SECURE_SYMLINKS (an open and a
 * stat of every parent of every entry) and a stat of each entry. Exact
 * again, only slower; taken when the table is full or two paths collide. */
static int stop_tracking(Unpack *u) {
        u->tracking = false;
        unpack_paths_done(&u->paths);
        if (archive_write_disk_set_options(u->writer, WRITER_OPTIONS |
                                           ARCHIVE_EXTRACT_SECURE_SYMLINKS) != ARCHIVE_OK)
                return error_set(u->ret_error, -EINVAL, "archive: cannot set up the writer");
        return 0;
}

/* In libarchive's order: write-disk makes a hardlink when a hardlink target
 * is set, else a symlink whenever a symlink target is set, whatever the file
 * type says (3.6.2). */
static UnpackPathType entry_path_type(struct archive_entry *e) {
        if (archive_entry_hardlink(e))
                return UNPACK_PATH_FILE;
        if (archive_entry_symlink(e))
                return UNPACK_PATH_SYMLINK;
        switch (archive_entry_filetype(e)) {
        case AE_IFDIR:
                return UNPACK_PATH_DIR;
        case AE_IFLNK:
                return UNPACK_PATH_SYMLINK;
        default:
                return UNPACK_PATH_FILE;
        }
}

/* Every parent of u->norm (n bytes) is a directory, never a symlink: what
 * SECURE_SYMLINKS refuses on disk. add: record a parent not seen yet as the
 * directory libarchive is about to create. Returns 1 when tracking has to
 * stop (a collision, a full table), 0 when fine. */
static int check_parents(Unpack *u, size_t n, bool add, const char *path, const char *what) {
        for (size_t i = 0; i < n; i++) {
                uint64_t h;
                struct stat st;
                int r;

                if (u->norm[i] != '/')
                        continue;
                h = unpack_paths_hash(&u->paths, u->norm, i);
                switch (unpack_paths_get(&u->paths, h)) {
                case UNPACK_PATH_NONE:
                        if (add && unpack_paths_put(&u->paths, h, UNPACK_PATH_DIR) < 0)
                                return 1;
                        break;
                case UNPACK_PATH_SYMLINK:
                        u->norm[i] = '\0';
                        r = fstatat(u->dir_fd, u->norm, &st, AT_SYMLINK_NOFOLLOW);
                        u->norm[i] = '/';
                        if (r >= 0 && S_ISLNK(st.st_mode))
                                return entry_error(u, -EBADMSG, path, "%s goes through a symlink", what);
                        return 1;
                default:
                        break;  /* a file: libarchive fails with ENOTDIR */
                }
        }
        return 0;
}

/* The parents of the entry, unless they are the last entry's (archives
 * list a directory's files together): then they were checked already, and
 * no entry since can have changed them (a duplicate is refused). */
static int track_parents(Unpack *u, size_t n, const char *path) {
        const char *slash = memrchr(u->norm, '/', n);
        size_t len = slash ? (size_t) (slash - u->norm) : 0;
        int r;

        if (len == 0 || (strlen(u->parent) == len && memcmp(u->parent, u->norm, len) == 0))
                return 0;
        r = check_parents(u, n, true, path, "path");
        if (r == 0) {
                memcpy(u->parent, u->norm, len);
                u->parent[len] = '\0';
        }
        return r;
}

/* In place of SECURE_SYMLINKS and check_duplicate()'s stat: the tree
 * started empty and only this process writes it, so what it holds is what
 * the table says (the run_as user could race us, but this worker runs as
 * that user, under Landlock, and gains nothing from following a link it
 * plants). A hit is confirmed on disk. Returns 1 when the table has to be
 * given up (full, or two paths share a hash). */
static int track_paths(Unpack *u, struct archive_entry *e, const char *path) {
        const char *link = archive_entry_hardlink(e);
        UnpackPathType t;
        struct stat st;
        uint64_t h;
        int n, r;

        if (link) {
                n = unpack_paths_normalize(link, u->norm, u->limits.max_path_length + 1);
                r = n < 0 ? 1 : check_parents(u, (size_t) n, false, path, "hardlink target");
                if (r != 0)
                        return r;
        }
        n = unpack_paths_normalize(path, u->norm, u->limits.max_path_length + 1);
        r = n < 0 ? 1 : track_parents(u, (size_t) n, path);
        if (r != 0)
                return r;
        h = unpack_paths_hash(&u->paths, u->norm, (size_t) n);
        t = unpack_paths_get(&u->paths, h);
        if (t == UNPACK_PATH_NONE)
                return unpack_paths_put(&u->paths, h, entry_path_type(e)) < 0 ? 1 : 0;
        if (t == UNPACK_PATH_DIR && entry_path_type(e) == UNPACK_PATH_DIR)
                return 0;      /* a directory named again: check_duplicate() allows it */
        /* "s/" or "s/." over a symlink: a duplicate, refused without a look
         * on disk (a keyed 62-bit hash collides by chance only). */
        if (t == UNPACK_PATH_SYMLINK && entry_path_type(e) == UNPACK_PATH_DIR)
                return entry_error(u, -EBADMSG, path, "duplicate entry");
        /* Only ENOENT is two paths sharing a hash. Any other failure
         * (ENOTDIR: a file where a parent should be) is refused as a
         * duplicate: giving up the table on it would let an archive force the
         * slow path cheaply. */
        if (fstatat(u->dir_fd, u->norm, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT)
                        return 1;
                return entry_error(u, -EBADMSG, path, "duplicate entry");
        }
        return check_duplicate(u, e, path);
}

/* Given up: this entry and the rest are checked on disk. */
static int track_entry(Unpack *u, struct archive_entry *e, const char *path) {
        int r = track_paths(u, e, path);

        if (r <= 0)
                return r;
        r = stop_tracking(u);
        return r < 0 ? r : check_duplicate(u, e, path);
}

static int check_mode(Unpack *u, struct archive_entry *e, const char *path) {
        mode_t mode = archive_entry_mode(e);

        if (archive_entry_hardlink(e)) {
                if (mode & (S_ISUID | S_ISGID))
                        return entry_error(u, -EBADMSG, path, "setuid/setgid files are not allowed");
                return 0;
        }
        switch (archive_entry_filetype(e)) {
        case AE_IFREG:
                if (mode & (S_ISUID | S_ISGID))
                        return entry_error(u, -EBADMSG, path, "setuid/setgid files are not allowed");
                archive_entry_set_perm(e, (mode & 0755) | 0400);
                break;
        case AE_IFDIR:
                archive_entry_set_perm(e, (mode & 0755) | 0700);
                break;
        default:
                break;
        }
        return 0;
}

static int check_size(Unpack *u, struct archive_entry *e) {
        uint64_t left = u->limits.max_unpacked_size - u->stats.bytes;

        if (archive_entry_size_is_set(e) && archive_entry_size(e) > 0 &&
            (uint64_t) archive_entry_size(e) > left)
                return error_set(u->ret_error, -EFBIG,
                                 "archive: unpacked size exceeds max_unpacked_size (%llu bytes)",
                                 (unsigned long long) u->limits.max_unpacked_size);
        return 0;
}

static int check_path(Unpack *u, const char *path) {
        if (unpack_check_path(path, u->limits.max_path_length, u->limits.max_depth) >= 0)
                return 0;
        if (unpack_check_path(path, SIZE_MAX, UINT_MAX) < 0)
                return entry_error(u, -EBADMSG, path, "path escapes the release");
        if (strlen(path) > u->limits.max_path_length)
                return entry_error(u, -EBADMSG, path, "path longer than %zu bytes",
                                   u->limits.max_path_length);
        return entry_error(u, -EBADMSG, path, "path deeper than %u levels", u->limits.max_depth);
}

/* Returns 1 when the entry is to be written, 0 when skipped (the root). */
static int check_entry(Unpack *u, struct archive_entry *e, const char *path) {
        const char *hardlink = archive_entry_hardlink(e), *p = path, *c;
        int r;

        if (!path)
                return entry_error(u, -EBADMSG, "?", "name cannot be decoded");
        r = check_path(u, path);
        if (r < 0)
                return r;
        /* tar readers report hardlinks with no file type, or as files */
        if (!hardlink || (archive_entry_filetype(e) != 0 && archive_entry_filetype(e) != AE_IFREG)) {
                r = check_type(u, e, path);
                if (r < 0)
                        return r;
        }
        if (next_component(&p, &c) == 0) {
                if (archive_entry_filetype(e) != AE_IFDIR || hardlink)
                        return entry_error(u, -EBADMSG, path, "the root can only be a directory");
                return 0;
        }
        if (hardlink)
                r = check_hardlink(u, path, hardlink);
        else if (archive_entry_symlink(e) || archive_entry_filetype(e) == AE_IFLNK)
                r = check_symlink(u, path, archive_entry_symlink(e));
        if (r < 0)
                return r;
        r = u->tracking ? track_entry(u, e, path) : check_duplicate(u, e, path);
        if (r < 0)
                return r;
        r = check_mode(u, e, path);
        if (r < 0)
                return r;
        r = check_size(u, e);
        return r < 0 ? r : 1;
}

static int copy_data(Unpack *u, const char *path) {
        uint64_t entry_bytes = 0;

        for (;;) {
                const void *buf;
                size_t size;
                la_int64_t offset;
                int r;

                r = archive_read_data_block(u->reader, &buf, &size, &offset);
                if (r == ARCHIVE_EOF)
                        break;
                if (r != ARCHIVE_OK)
                        return archive_failure(u, u->reader, path);
                if (offset < 0 || (uint64_t) offset > u->limits.max_unpacked_size)
                        goto too_big;
                /* Sparse holes count: the limit is on file sizes. */
                if ((uint64_t) offset + size > entry_bytes)
                        entry_bytes = (uint64_t) offset + size;
                if (entry_bytes > u->limits.max_unpacked_size - u->stats.bytes)
                        goto too_big;
                if (archive_write_data_block(u->writer, buf, size, offset) != ARCHIVE_OK)
                        return archive_failure(u, u->writer, path);
        }
        u->stats.bytes += entry_bytes;
        return 0;

too_big:
        return error_set(u->ret_error, -EFBIG,
                         "archive: unpacked size exceeds max_unpacked_size (%llu bytes)",
                         (unsigned long long) u->limits.max_unpacked_size);
}

static int extract_entry(Unpack *u, struct archive_entry *e) {
        const char *path = archive_entry_pathname(e);
        int r;

        if (++u->stats.entries > u->limits.max_entries)
                return error_set(u->ret_error, -E2BIG,
                                 "archive: more entries than max_entries (%llu)",
                                 (unsigned long long) u->limits.max_entries);
        r = check_entry(u, e, path);
        if (r <= 0)
                return r;
        u->written++;
        if (archive_write_header(u->writer, e) != ARCHIVE_OK)
                return archive_failure(u, u->writer, path);
        r = copy_data(u, path);
        if (r < 0)
                return r;
        if (archive_write_finish_entry(u->writer) != ARCHIVE_OK)
                return archive_failure(u, u->writer, path);
        return 0;
}

static int extract_all(Unpack *u) {
        for (;;) {
                struct archive_entry *e;
                int r;

                r = archive_read_next_header(u->reader, &e);
                if (r == ARCHIVE_EOF)
                        break;
                if (r != ARCHIVE_OK)
                        return archive_failure(u, u->reader, NULL);
                r = extract_entry(u, e);
                if (r < 0)
                        return r;
        }
        /* An empty release cannot be a working service: a CI mistake. The
         * root is skipped, so "./" alone would leave the release empty too. */
        if (u->stats.entries == 0)
                return error_set(u->ret_error, -EBADMSG, "archive: contains no entries");
        if (u->written == 0)
                return error_set(u->ret_error, -EBADMSG,
                                 "archive: contains no entries but the root directory");
        /* Applies deferred directory times; must succeed too. */
        if (archive_write_close(u->writer) != ARCHIVE_OK)
                return archive_failure(u, u->writer, NULL);
        return 0;
}

static size_t read_block_size(int fd) {
        struct stat st;

        if (fstat(fd, &st) < 0 || st.st_size >= UNPACK_READ_BLOCK_MAX)
                return UNPACK_READ_BLOCK_MAX;
        return st.st_size <= UNPACK_READ_BLOCK_MIN ? UNPACK_READ_BLOCK_MIN : (size_t) st.st_size;
}

static int open_reader(Unpack *u, int archive_fd) {
        u->reader = archive_read_new();
        if (!u->reader)
                return error_set(u->ret_error, -ENOMEM, "archive: out of memory");
        /* Only what we ship: most libarchive CVEs live in the other readers.
         * A WARN here means an external helper program: refuse that too. */
        if (archive_read_support_format_tar(u->reader) != ARCHIVE_OK ||
            archive_read_support_format_zip(u->reader) != ARCHIVE_OK ||
            archive_read_support_filter_none(u->reader) != ARCHIVE_OK ||
            archive_read_support_filter_gzip(u->reader) != ARCHIVE_OK ||
            archive_read_support_filter_zstd(u->reader) != ARCHIVE_OK ||
            archive_read_support_filter_xz(u->reader) != ARCHIVE_OK)
                return error_set(u->ret_error, -EOPNOTSUPP,
                                 "archive: libarchive lacks built-in tar, zip, gzip, zstd or xz support");
        /* the kernel reads ahead further on a sequential file */
        (void) posix_fadvise(archive_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        if (archive_read_open_fd(u->reader, archive_fd, read_block_size(archive_fd)) != ARCHIVE_OK)
                return archive_failure(u, u->reader, NULL);
        return 0;
}

static int open_writer(struct archive **ret) {
        _cleanup_archive_ struct archive *a = NULL;
        mode_t old;

        /* archive_write_disk_new() samples the umask: make it ours. */
        old = umask(0022);
        a = archive_write_disk_new();
        umask(old);
        if (!a)
                return -ENOMEM;
        /* No SECURE_SYMLINKS while track_entry() checks the same in memory;
         * stop_tracking() sets it. */
        if (archive_write_disk_set_options(a, WRITER_OPTIONS) != ARCHIVE_OK)
                return -EINVAL;
        *ret = TAKE_PTR(a);
        return 0;
}

static UnpackLimits limits_normalize(const UnpackLimits *l) {
        UnpackLimits n = *l;

        if (n.max_path_length == 0)
                n.max_path_length = UNPACK_PATH_LENGTH_DEFAULT;
        if (n.max_depth == 0)
                n.max_depth = UNPACK_DEPTH_DEFAULT;
        return n;
}

#define NTFS_SUPER_MAGIC 0x5346544eU   /* the old ntfs driver */
#define NTFS3_SUPER_MAGIC 0x7366746eU  /* ntfs3 */

/* The table compares exact bytes; where names are case-insensitive the
 * kernel would take "s/x" through a symlink "S" the table never saw as a
 * parent. There only the on-disk checks are right; so on FUSE (ntfs-3g
 * among others), which may fold case. FS_IOC_GETFLAGS is in the
 * unpack worker's seccomp list (libarchive reads flags too); a failure means
 * no flags to read, not case folding. */
static bool dir_folds_case(int dir_fd) {
        struct statfs sf;
        int flags = 0;

        if (ioctl(dir_fd, FS_IOC_GETFLAGS, &flags) >= 0 && (flags & FS_CASEFOLD_FL))
                return true;
        if (fstatfs(dir_fd, &sf) < 0)
                return true;   /* unknown: be exact */
        switch ((unsigned long) sf.f_type) {
        case MSDOS_SUPER_MAGIC:
        case EXFAT_SUPER_MAGIC:
        case NTFS_SUPER_MAGIC:
        case NTFS3_SUPER_MAGIC:
        case CIFS_SUPER_MAGIC:
        case SMB2_SUPER_MAGIC:
        case FUSE_SUPER_MAGIC: /* ntfs-3g, and whatever else runs on FUSE */
                return true;
        default:
                return false;
        }
}

/* Without memory for the table, or on a case-insensitive file system, the
 * checks stay on disk, as before it. */
static int start_tracking(Unpack *u) {
        size_t n = u->limits.max_path_length + 1;

        if (dir_folds_case(u->dir_fd))
                return stop_tracking(u);
        u->norm = malloc(n);
        u->parent = calloc(1, n);
        if (!u->norm || !u->parent || unpack_paths_init(&u->paths, u->limits.max_tracked_paths) < 0)
                return stop_tracking(u);
        u->tracking = true;
        return 0;
}

static int unpack_run(Unpack *u, int archive_fd) {
        int r;

        if (fchdir(u->dir_fd) < 0)
                return error_set(u->ret_error, -errno, "chdir into the release: %m");
        r = open_reader(u, archive_fd);
        if (r < 0)
                return r;
        r = open_writer(&u->writer);
        if (r < 0)
                return error_set(u->ret_error, r, "archive: cannot set up the writer");
        r = start_tracking(u);
        if (r < 0)
                return r;
        return extract_all(u);
}

int unpack_archive(int archive_fd, int dir_fd, const UnpackLimits *limits,
                   UnpackStats *ret_stats, char **ret_error) {
        _cleanup_(freelocalep) locale_t utf8 = (locale_t) 0;
        Unpack u = {
                .dir_fd = dir_fd,
                .limits = limits_normalize(limits),
                .ret_error = ret_error,
        };
        locale_t old = (locale_t) 0;
        int r;

        /* Pax names are UTF-8: under the C locale libarchive warns on every
         * non-ASCII name, and a warning is a failure here. */
        utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t) 0);
        if (utf8 != (locale_t) 0)
                old = uselocale(utf8);
        r = unpack_run(&u, archive_fd);
        if (u.reader)
                archive_free(u.reader);
        if (u.writer)
                archive_free(u.writer);
        unpack_paths_done(&u.paths);
        free(u.norm);
        free(u.parent);
        if (old != (locale_t) 0)
                uselocale(old);
        if (r < 0)
                return r;
        if (ret_stats)
                *ret_stats = u.stats;
        return 0;
}
