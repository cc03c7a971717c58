/* unpack-fixture.h: archives built with libarchive's writer and a scratch
 * tree to extract them into, shared by the unpack tests. Its functions are
 * static inline (not every test uses all). */
#pragma once

#define _GNU_SOURCE
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <locale.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <cmocka.h>
#include "artifact/unpack.h"
#include "common/util.h"

/* ---- archive builders ---- */

typedef enum Compress { COMPRESS_GZIP, COMPRESS_ZSTD, COMPRESS_XZ, COMPRESS_NONE } Compress;

typedef struct Builder {
        struct archive *a;
        int fd;
} Builder;

static inline Builder builder_new(Compress c, bool zip) {
        Builder b = { .a = archive_write_new() };

        b.fd = memfd_create("archive", MFD_CLOEXEC);
        assert_true(b.fd >= 0);
        assert_non_null(b.a);
        if (zip)
                assert_int_equal(archive_write_set_format_zip(b.a), ARCHIVE_OK);
        else
                assert_int_equal(archive_write_set_format_pax_restricted(b.a), ARCHIVE_OK);
        if (c == COMPRESS_GZIP)
                assert_int_equal(archive_write_add_filter_gzip(b.a), ARCHIVE_OK);
        else if (c == COMPRESS_ZSTD)
                assert_int_equal(archive_write_add_filter_zstd(b.a), ARCHIVE_OK);
        else if (c == COMPRESS_XZ)
                assert_int_equal(archive_write_add_filter_xz(b.a), ARCHIVE_OK);
        assert_int_equal(archive_write_open_fd(b.a, b.fd), ARCHIVE_OK);
        return b;
}

static inline struct archive_entry *entry_new(const char *path, unsigned type, unsigned perm) {
        struct archive_entry *e = archive_entry_new();

        archive_entry_set_pathname(e, path);
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, perm);
        archive_entry_set_mtime(e, 1700000000, 0);
        return e;
}

static inline void add_entry(Builder *b, struct archive_entry *e, const void *data, size_t n) {
        if (archive_write_header(b->a, e) != ARCHIVE_OK)
                fail_msg("build %s: %s", archive_entry_pathname(e), archive_error_string(b->a));
        if (n > 0)
                assert_int_equal(archive_write_data(b->a, data, n), (la_ssize_t) n);
        archive_entry_free(e);
}

static inline void add_file(Builder *b, const char *path, unsigned perm, const char *data) {
        struct archive_entry *e = entry_new(path, AE_IFREG, perm);

        archive_entry_set_size(e, (la_int64_t) strlen(data));
        add_entry(b, e, data, strlen(data));
}

static inline void add_dir(Builder *b, const char *path) {
        add_entry(b, entry_new(path, AE_IFDIR, 0755), NULL, 0);
}

static inline void add_symlink(Builder *b, const char *path, const char *target) {
        struct archive_entry *e = entry_new(path, AE_IFLNK, 0777);

        archive_entry_set_symlink(e, target);
        add_entry(b, e, NULL, 0);
}

static inline void add_hardlink(Builder *b, const char *path, const char *target) {
        struct archive_entry *e = entry_new(path, AE_IFREG, 0644);

        archive_entry_set_hardlink(e, target);
        add_entry(b, e, NULL, 0);
}

static inline void add_zeros(Builder *b, const char *path, size_t size) {
        struct archive_entry *e = entry_new(path, AE_IFREG, 0644);
        static const char zeros[64 * 1024];

        archive_entry_set_size(e, (la_int64_t) size);
        assert_int_equal(archive_write_header(b->a, e), ARCHIVE_OK);
        for (size_t done = 0; done < size; done += sizeof(zeros))
                assert_true(archive_write_data(b->a, zeros, sizeof(zeros)) > 0);
        archive_entry_free(e);
}

/* Finishes the archive and returns its fd, rewound. */
static inline int builder_finish(Builder *b) {
        assert_int_equal(archive_write_close(b->a), ARCHIVE_OK);
        archive_write_free(b->a);
        assert_int_equal(lseek(b->fd, 0, SEEK_SET), 0);
        return b->fd;
}

/* ---- scratch tree: base/outer/root, root is the release ---- */

typedef struct Scratch {
        char base[64];
        char root[96];
        char outer[80];
        int root_fd;
} Scratch;

static inline int scratch_setup(void **state) {
        Scratch *s = calloc(1, sizeof(Scratch));

        assert_non_null(s);
        strcpy(s->base, "/tmp/test-unpack-XXXXXX");
        assert_non_null(mkdtemp(s->base));
        snprintf(s->outer, sizeof(s->outer), "%s/outer", s->base);
        snprintf(s->root, sizeof(s->root), "%s/root", s->outer);
        assert_int_equal(mkdir(s->outer, 0755), 0);
        assert_int_equal(mkdir(s->root, 0755), 0);
        s->root_fd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(s->root_fd >= 0);
        *state = s;
        return 0;
}

static inline int scratch_teardown(void **state) {
        Scratch *s = *state;
        char cmd[256];

        assert_int_equal(chdir("/"), 0);
        close(s->root_fd);
        snprintf(cmd, sizeof(cmd), "chmod -R u+rwx %s; rm -rf %s", s->base, s->base);
        assert_int_equal(system(cmd), 0);
        free(s);
        return 0;
}

/* Empties the release between the cases of one test. */
static inline void scratch_reset(Scratch *s) {
        char cmd[256];

        assert_int_equal(chdir("/"), 0);
        close(s->root_fd);
        snprintf(cmd, sizeof(cmd), "rm -rf %s && mkdir %s", s->root, s->root);
        assert_int_equal(system(cmd), 0);
        s->root_fd = open(s->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        assert_true(s->root_fd >= 0);
}

static const UnpackLimits default_limits = {
        .max_unpacked_size = 1024 * 1024,
        .max_entries = 100,
};

static inline int run_unpack(Scratch *s, int fd, const UnpackLimits *l, UnpackStats *st, char **err) {
        int r = unpack_archive(fd, s->root_fd, l ? l : &default_limits, st, err);

        close(fd);
        return r;
}

static inline int count_entries(const char *path) {
        DIR *d = opendir(path);
        struct dirent *de;
        int n = 0;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        n++;
        closedir(d);
        return n;
}

static inline void assert_file(int dir_fd, const char *path, const char *content, mode_t perm) {
        char buf[256] = "";
        struct stat st;
        int fd;

        fd = openat(dir_fd, path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                fail_msg("open %s: %m", path);
        assert_int_equal(read(fd, buf, sizeof(buf) - 1), (ssize_t) strlen(content));
        assert_string_equal(buf, content);
        assert_int_equal(fstat(fd, &st), 0);
        assert_int_equal(st.st_mode & 07777, perm);
        close(fd);
}

/* A hostile archive fails with a message naming reason, and nothing at all
 * appears beside the release (outer holds only root). */
static inline void assert_rejected(Scratch *s, int fd, const UnpackLimits *l, int expect_r,
                            const char *reason) {
        _cleanup_free_ char *err = NULL;
        int r = run_unpack(s, fd, l, NULL, &err);

        if (r != expect_r)
                fail_msg("unpack = %d (%s), expected %d", r, strempty(err), expect_r);
        assert_non_null(err);
        print_message("  rejected: %s\n", err);
        if (!strstr(err, reason))
                fail_msg("error \"%s\" does not contain \"%s\"", err, reason);
        assert_int_equal(count_entries(s->outer), 1);
        assert_int_equal(count_entries(s->base), 1);
}

/* ---- extraction ---- */

/* The test runs in the C locale, as the worker does; only the builder needs
 * UTF-8 to store a non-ASCII name (libarchive caches the charset of the
 * locale it first converts in). */
