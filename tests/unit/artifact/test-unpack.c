/* test-unpack.c: the pure path checks, then real archives built with
 * libarchive's writer and extracted into a scratch tree. */
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

/* ---- pure checks ---- */

static void test_check_path(void **state) {
        static const struct {
                const char *path;
                int ok;
        } table[] = {
                { "a", 1 },            { "a/b", 1 },         { "./a", 1 },
                { "a//b", 1 },         { "a/b/", 1 },        { ".", 1 },
                { "./", 1 },           { "a/./b", 1 },       { "..a/b", 1 },
                { "a..", 1 },          { "", 0 },            { "..", 0 },
                { "../a", 0 },         { "a/../b", 0 },      { "a/..", 0 },
                { "/etc", 0 },         { "/", 0 },           { "./../a", 0 },
                { "a/b/../../..", 0 }, { "//etc/passwd", 0 },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                int r = unpack_check_path(table[i].path, 4096, 64);
                if ((r == 0) != table[i].ok)
                        fail_msg("unpack_check_path(\"%s\") = %d", table[i].path, r);
        }
        assert_int_equal(unpack_check_path(NULL, 4096, 64), -EINVAL);
}

static void test_check_path_limits(void **state) {
        char deep[512] = "", longp[64];

        for (int i = 0; i < 64; i++)
                strcat(deep, "d/");
        assert_int_equal(unpack_check_path(deep, 4096, 64), 0);
        strcat(deep, "x");
        assert_int_equal(unpack_check_path(deep, 4096, 64), -EINVAL);
        /* "." and empty components are not levels */
        assert_int_equal(unpack_check_path("a/./b//c", 4096, 3), 0);
        assert_int_equal(unpack_check_path("a/b/c/d", 4096, 3), -EINVAL);

        memset(longp, 'x', sizeof(longp) - 1);
        longp[sizeof(longp) - 1] = '\0';
        assert_int_equal(unpack_check_path(longp, 63, 64), 0);
        assert_int_equal(unpack_check_path(longp, 62, 64), -EINVAL);
}

static void test_link_target_inside(void **state) {
        static const struct {
                const char *entry, *target;
                bool inside;
        } table[] = {
                { "a/l", "../b", true },         { "l", "b", true },
                { "l", "./b/c", true },          { "a/b/l", "../../x", true },
                { "a/b/l", "../x/../y", false }, { "l", ".", true },
                { "./a/l", "../b", true },       { "a//l", "../b", true },
                { "a/l", "..", true },           { "l", "../x", false },
                { "l", "..", false },            { "a/b/l", "../../../x", false },
                { "l", "/etc", false },          { "a/l", "/etc/passwd", false },
                { "l", "", false },              { "", "x", false },
                { "a/l", "b/../../x", false },   { "l", "a/../b", false },
                { "../l", "x", false },          { "/l", "x", false },
                { ".", "x", false },             { "a/./l", ".././b", true },
        };

        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (unpack_link_target_inside(table[i].entry, table[i].target) != table[i].inside)
                        fail_msg("unpack_link_target_inside(\"%s\", \"%s\") != %d",
                                 table[i].entry, table[i].target, table[i].inside);
}

/* ---- archive builders ---- */

typedef enum Compress { COMPRESS_GZIP, COMPRESS_ZSTD, COMPRESS_XZ, COMPRESS_NONE } Compress;

typedef struct Builder {
        struct archive *a;
        int fd;
} Builder;

static Builder builder_new(Compress c, bool zip) {
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

static struct archive_entry *entry_new(const char *path, unsigned type, unsigned perm) {
        struct archive_entry *e = archive_entry_new();

        archive_entry_set_pathname(e, path);
        archive_entry_set_filetype(e, type);
        archive_entry_set_perm(e, perm);
        archive_entry_set_mtime(e, 1700000000, 0);
        return e;
}

static void add_entry(Builder *b, struct archive_entry *e, const void *data, size_t n) {
        if (archive_write_header(b->a, e) != ARCHIVE_OK)
                fail_msg("build %s: %s", archive_entry_pathname(e), archive_error_string(b->a));
        if (n > 0)
                assert_int_equal(archive_write_data(b->a, data, n), (la_ssize_t) n);
        archive_entry_free(e);
}

static void add_file(Builder *b, const char *path, unsigned perm, const char *data) {
        struct archive_entry *e = entry_new(path, AE_IFREG, perm);

        archive_entry_set_size(e, (la_int64_t) strlen(data));
        add_entry(b, e, data, strlen(data));
}

static void add_dir(Builder *b, const char *path) {
        add_entry(b, entry_new(path, AE_IFDIR, 0755), NULL, 0);
}

static void add_symlink(Builder *b, const char *path, const char *target) {
        struct archive_entry *e = entry_new(path, AE_IFLNK, 0777);

        archive_entry_set_symlink(e, target);
        add_entry(b, e, NULL, 0);
}

static void add_hardlink(Builder *b, const char *path, const char *target) {
        struct archive_entry *e = entry_new(path, AE_IFREG, 0644);

        archive_entry_set_hardlink(e, target);
        add_entry(b, e, NULL, 0);
}

static void add_zeros(Builder *b, const char *path, size_t size) {
        struct archive_entry *e = entry_new(path, AE_IFREG, 0644);
        static const char zeros[64 * 1024];

        archive_entry_set_size(e, (la_int64_t) size);
        assert_int_equal(archive_write_header(b->a, e), ARCHIVE_OK);
        for (size_t done = 0; done < size; done += sizeof(zeros))
                assert_true(archive_write_data(b->a, zeros, sizeof(zeros)) > 0);
        archive_entry_free(e);
}

/* Finishes the archive and returns its fd, rewound. */
static int builder_finish(Builder *b) {
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

static int scratch_setup(void **state) {
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

static int scratch_teardown(void **state) {
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
static void scratch_reset(Scratch *s) {
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

static int run_unpack(Scratch *s, int fd, const UnpackLimits *l, UnpackStats *st, char **err) {
        int r = unpack_archive(fd, s->root_fd, l ? l : &default_limits, st, err);

        close(fd);
        return r;
}

static int count_entries(const char *path) {
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

static void assert_file(int dir_fd, const char *path, const char *content, mode_t perm) {
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
static void assert_rejected(Scratch *s, int fd, const UnpackLimits *l, int expect_r,
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
static int good_archive(Compress c) {
        locale_t utf8 = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t) 0), old;
        Builder bb, *b = &bb;
        int fd;

        assert_true(utf8 != (locale_t) 0);
        old = uselocale(utf8);
        bb = builder_new(c, false);
        add_dir(b, "./");
        add_dir(b, "app");
        add_file(b, "app/run.sh", 0755, "#!/bin/sh\n");
        add_file(b, "app/secret", 0600, "s3cr3t");
        add_file(b, "app/open", 0666, "world");
        add_file(b, "README", 0644, "hello");
        add_symlink(b, "app/readme", "../README");
        add_hardlink(b, "app/hl", "README");
        add_file(b, "deep/er/caf\xc3\xa9.txt", 0444, "utf8");
        add_entry(b, entry_new("wide", AE_IFDIR, 02777), NULL, 0);
        fd = builder_finish(b);
        uselocale(old);
        freelocale(utf8);
        return fd;
}

static void assert_good_tree(Scratch *s) {
        char target[64] = "";
        struct stat st;

        assert_file(s->root_fd, "app/run.sh", "#!/bin/sh\n", 0755);
        assert_file(s->root_fd, "app/secret", "s3cr3t", 0600);
        assert_file(s->root_fd, "app/open", "world", 0644);
        assert_file(s->root_fd, "README", "hello", 0644);
        assert_file(s->root_fd, "app/hl", "hello", 0644);
        assert_file(s->root_fd, "deep/er/caf\xc3\xa9.txt", "utf8", 0444);
        assert_true(readlinkat(s->root_fd, "app/readme", target, sizeof(target)) > 0);
        assert_string_equal(target, "../README");
        assert_int_equal(fstatat(s->root_fd, "wide", &st, 0), 0);
        assert_int_equal(st.st_mode & 07777, 0755);
        assert_int_equal(fstatat(s->root_fd, "app/run.sh", &st, 0), 0);
        assert_int_equal(st.st_mtime, 1700000000);
}

static void test_good(void **state) {
        static const Compress kinds[] = { COMPRESS_GZIP, COMPRESS_ZSTD, COMPRESS_XZ, COMPRESS_NONE };
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                _cleanup_free_ char *err = NULL;
                char sub[16];
                UnpackStats st = {};
                int dir_fd = s->root_fd, r;

                snprintf(sub, sizeof(sub), "k%zu", i);
                assert_int_equal(mkdirat(dir_fd, sub, 0755), 0);
                s->root_fd = openat(dir_fd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                r = run_unpack(s, good_archive(kinds[i]), NULL, &st, &err);
                if (r < 0)
                        fail_msg("kind %zu: %d %s", i, r, strempty(err));
                assert_int_equal(st.entries, 10);
                assert_int_equal(st.bytes, 10 + 6 + 5 + 5 + 4);
                assert_good_tree(s);
                close(s->root_fd);
                s->root_fd = dir_fd;
        }
}

static void test_zip(void **state) {
        _cleanup_free_ char *err = NULL;
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_NONE, true);
        int r;

        add_dir(&b, "app/");
        add_file(&b, "app/index.html", 0644, "<html>");
        add_file(&b, "app/x.sh", 0755, "x");
        r = run_unpack(s, builder_finish(&b), NULL, NULL, &err);
        if (r < 0)
                fail_msg("%d %s", r, strempty(err));
        assert_file(s->root_fd, "app/index.html", "<html>", 0644);
        assert_file(s->root_fd, "app/x.sh", "x", 0755);
}

static void test_zip_traversal(void **state) {
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_NONE, true);

        add_file(&b, "ok", 0644, "ok");
        add_file(&b, "../evil", 0644, "evil");
        assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "escapes the release");
}

static void test_dotdot(void **state) {
        static const char *paths[] = { "../evil", "a/../../evil", "./../evil", "a/.." };
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(paths); i++) {
                Builder b = builder_new(COMPRESS_GZIP, false);

                scratch_reset(s);

                add_file(&b, "fine", 0644, "x");
                add_file(&b, paths[i], 0644, "evil");
                assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "escapes the release");
        }
}

static void test_absolute(void **state) {
        char path[128];
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, false);

        snprintf(path, sizeof(path), "%s/evil", s->outer);
        add_file(&b, path, 0644, "evil");
        assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "escapes the release");
}

static void test_symlink_out(void **state) {
        static const struct {
                const char *path, *target;
        } links[] = { { "etc", "/etc" }, { "l", "../" }, { "a/b/l", "../../../x" },
                      { "l", "a/../../x" } };
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(links); i++) {
                Builder b = builder_new(COMPRESS_GZIP, false);

                scratch_reset(s);

                add_symlink(&b, links[i].path, links[i].target);
                assert_rejected(s, builder_finish(&b), NULL, -EBADMSG,
                                "symlink target escapes the release");
        }
}

static void test_symlink_then_write(void **state) {
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, false);

        add_symlink(&b, "l", "..");
        add_file(&b, "l/evil", 0644, "evil");
        assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "symlink target escapes");
}

static void test_write_through_inside_symlink(void **state) {
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, false);

        /* "d" -> "." is inside; "d/../x" would not be: libarchive's
         * SECURE_SYMLINKS refuses writing through any symlink. */
        add_symlink(&b, "d", ".");
        add_file(&b, "d/x", 0644, "x");
        assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "entry \"d/x\"");
}

static void test_hardlink(void **state) {
        static const struct {
                const char *target, *reason;
        } links[] = {
                { "/etc/passwd", "hardlink target escapes" },
                { "../../../../../../etc/passwd", "hardlink target escapes" },
                { "missing", "not a regular file" },
                { "dir", "not a regular file" },
                { "sl", "not a regular file" },
        };
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(links); i++) {
                Builder b = builder_new(COMPRESS_GZIP, false);

                scratch_reset(s);

                add_dir(&b, "dir");
                add_symlink(&b, "sl", "dir");
                add_hardlink(&b, "x", links[i].target);
                assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, links[i].reason);
        }
}

static void test_special_files(void **state) {
        static const struct {
                unsigned type;
                const char *reason;
        } kinds[] = { { AE_IFCHR, "device nodes are not allowed" },
                      { AE_IFBLK, "device nodes are not allowed" },
                      { AE_IFIFO, "fifos are not allowed" } };
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(kinds); i++) {
                Builder b = builder_new(COMPRESS_GZIP, false);

                scratch_reset(s);
                struct archive_entry *e = entry_new("dev", kinds[i].type, 0666);

                archive_entry_set_rdev(e, makedev(1, 3));
                add_entry(&b, e, NULL, 0);
                assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, kinds[i].reason);
                assert_int_equal(count_entries(s->root), 0);
        }
}

static void test_setuid(void **state) {
        static const unsigned modes[] = { 04755, 02755, 06711 };
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(modes); i++) {
                Builder b = builder_new(COMPRESS_GZIP, false);

                scratch_reset(s);

                add_file(&b, "suid", modes[i], "#!/bin/sh\n");
                assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "setuid/setgid");
                assert_int_equal(count_entries(s->root), 0);
        }
}

static void test_duplicate(void **state) {
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, false);

        add_file(&b, "a", 0644, "first");
        add_file(&b, "./a", 0644, "second");
        assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "duplicate entry");
}

static void test_file_under_file(void **state) {
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, false);

        add_file(&b, "a", 0644, "file");
        add_file(&b, "a/b", 0644, "child");
        assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "entry \"a/b\"");
}

static void test_too_deep(void **state) {
        char deep[256] = "";
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, false);

        for (int i = 0; i < 65; i++)
                strcat(deep, "d/");
        strcat(deep, "f");
        add_file(&b, deep, 0644, "x");
        assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "path deeper than 64 levels");
}

static void test_max_entries(void **state) {
        UnpackLimits l = default_limits;
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, false);

        for (int i = 0; i < 200; i++) {
                char name[16];

                snprintf(name, sizeof(name), "f%d", i);
                add_file(&b, name, 0644, "x");
        }
        l.max_entries = 50;
        assert_rejected(s, builder_finish(&b), &l, -E2BIG, "max_entries");
        assert_int_equal(count_entries(s->root), 50);
}

static uint64_t tree_bytes(const char *path) {
        DIR *d = opendir(path);
        struct dirent *de;
        uint64_t n = 0;

        assert_non_null(d);
        while ((de = readdir(d))) {
                struct stat st;

                if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
                        n += (uint64_t) st.st_size + (uint64_t) st.st_blocks * 512;
        }
        closedir(d);
        return n;
}

static void test_bomb(void **state) {
        UnpackLimits l = { .max_unpacked_size = 16 << 20, .max_entries = 10 };
        struct stat st;
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, false);

        add_file(&b, "small", 0644, "x");
        add_zeros(&b, "zeros", 64 << 20);
        builder_finish(&b);
        assert_int_equal(fstat(b.fd, &st), 0);
        assert_true(st.st_size < 1 << 20);
        assert_rejected(s, b.fd, &l, -EFBIG, "unpacked size exceeds max_unpacked_size (16777216 bytes)");
        /* apparent size plus allocated blocks, both at most the cap */
        assert_true(tree_bytes(s->root) <= 2 * l.max_unpacked_size);
}

static void test_bomb_streamed(void **state) {
        UnpackLimits l = { .max_unpacked_size = 1 << 20, .max_entries = 10 };
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, true);
        struct archive_entry *e = entry_new("zeros", AE_IFREG, 0644);
        static const char zeros[64 * 1024];

        /* zip without a size in the header: only the streamed count can stop it */
        archive_entry_unset_size(e);
        assert_int_equal(archive_write_header(b.a, e), ARCHIVE_OK);
        for (int i = 0; i < 64; i++)
                assert_true(archive_write_data(b.a, zeros, sizeof(zeros)) > 0);
        archive_entry_free(e);
        assert_rejected(s, builder_finish(&b), &l, -EFBIG, "max_unpacked_size");
        assert_true(tree_bytes(s->root) <= 2 * l.max_unpacked_size);
}

static void test_truncated(void **state) {
        static const Compress kinds[] = { COMPRESS_GZIP, COMPRESS_ZSTD, COMPRESS_XZ, COMPRESS_NONE };
        static uint8_t noise[256 * 1024];
        Scratch *s = *state;

        for (size_t i = 0; i < sizeof(noise); i++)
                noise[i] = (uint8_t) (i * 2654435761u >> 13);
        for (size_t k = 0; k < ELEMENTSOF(kinds); k++) {
                Builder b = builder_new(kinds[k], false);
                struct archive_entry *e = entry_new("noise", AE_IFREG, 0644);
                struct stat st;

                scratch_reset(s);
                archive_entry_set_size(e, sizeof(noise));
                add_entry(&b, e, noise, sizeof(noise));
                builder_finish(&b);
                assert_int_equal(fstat(b.fd, &st), 0);
                assert_int_equal(ftruncate(b.fd, st.st_size / 2), 0);
                assert_rejected(s, b.fd, NULL, -EBADMSG, "");
        }
}

static void test_empty(void **state) {
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, false);

        assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "contains no entries");
}

/* Only the root itself, however spelled and however often, is an empty
 * release too: it used to be deployed as one. */
static void test_only_root(void **state) {
        static const char *const roots[][3] = {
                { "./" }, { "." }, { "./", "./" }, { "./", ".", ".//" }, { "./.", "././" },
        };
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(roots); i++) {
                Builder b = builder_new(COMPRESS_GZIP, false);

                scratch_reset(s);
                for (size_t j = 0; j < ELEMENTSOF(roots[i]) && roots[i][j]; j++)
                        add_dir(&b, roots[i][j]);
                assert_rejected(s, builder_finish(&b), NULL, -EBADMSG,
                                "contains no entries but the root directory");
                assert_int_equal(count_entries(s->root), 0);
        }
}

static void test_zip_symlink_out(void **state) {
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_NONE, true);

        add_symlink(&b, "etc", "/etc");
        assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "symlink target escapes");
}

static void test_long_path(void **state) {
        UnpackLimits l = default_limits;
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, false);

        l.max_path_length = 16;
        add_file(&b, "short", 0644, "x");
        add_file(&b, "a-name-of-17-byte", 0644, "x");
        assert_rejected(s, builder_finish(&b), &l, -EBADMSG, "path longer than 16 bytes");
}

static void test_root_not_a_dir(void **state) {
        Scratch *s = *state;
        Builder b = builder_new(COMPRESS_GZIP, false);

        add_symlink(&b, "./", "x");
        assert_rejected(s, builder_finish(&b), NULL, -EBADMSG, "the root can only be a directory");
}

static void test_garbage(void **state) {
        Scratch *s = *state;
        int fd = memfd_create("garbage", MFD_CLOEXEC);

        assert_int_equal(loop_write(fd, "this is not an archive at all\n", 30), 0);
        assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
        assert_rejected(s, fd, NULL, -EBADMSG, "archive: ");
}

/* ---- checks in memory, and on disk once the table is given up ---- */

/* max_tracked_paths 0: the table all along; 1 to 3: full after so many paths, so
 * libarchive's SECURE_SYMLINKS and a stat per entry take over. */
static const size_t tracked[] = { 0, 1, 2, 3 };

static UnpackLimits limits_tracked(size_t max_tracked) {
        UnpackLimits l = default_limits;

        l.max_tracked_paths = max_tracked;
        return l;
}

static void test_tracked_through_symlink(void **state) {
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(tracked); i++) {
                UnpackLimits l = limits_tracked(tracked[i]);
                Builder b = builder_new(COMPRESS_GZIP, false);

                scratch_reset(s);
                add_dir(&b, "a");
                add_file(&b, "a/f", 0644, "f");
                add_symlink(&b, "a/l", ".");
                add_file(&b, "a/l/x", 0644, "x");
                assert_rejected(s, builder_finish(&b), &l, -EBADMSG, "entry \"a/l/x\"");
        }
}

static void test_tracked_hardlink_through_symlink(void **state) {
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(tracked); i++) {
                UnpackLimits l = limits_tracked(tracked[i]);
                Builder b = builder_new(COMPRESS_GZIP, false);

                scratch_reset(s);
                add_file(&b, "dir/file", 0644, "f");
                add_symlink(&b, "sl", "dir");
                add_hardlink(&b, "x", "sl/file");
                assert_rejected(s, builder_finish(&b), &l, -EBADMSG, "entry \"x\"");
        }
}

static void test_tracked_duplicates(void **state) {
        static const char *const dups[] = { "a/b", "a", "./a/b", "a//b" };
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(tracked); i++)
                for (size_t k = 0; k < ELEMENTSOF(dups); k++) {
                        UnpackLimits l = limits_tracked(tracked[i]);
                        Builder b = builder_new(COMPRESS_GZIP, false);

                        scratch_reset(s);
                        add_file(&b, "a/b", 0644, "first");
                        add_file(&b, "c", 0644, "other");
                        add_file(&b, dups[k], 0644, "second");
                        assert_rejected(s, builder_finish(&b), &l, -EBADMSG, "duplicate entry");
                }
}

/* A directory libarchive made as a parent may be named later; so may a
 * directory twice. */
static void test_tracked_dirs_again(void **state) {
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(tracked); i++) {
                _cleanup_free_ char *err = NULL;
                UnpackLimits l = limits_tracked(tracked[i]);
                Builder b = builder_new(COMPRESS_GZIP, false);
                int r;

                scratch_reset(s);
                add_file(&b, "a/b/c", 0644, "c");
                add_dir(&b, "a/b");
                add_dir(&b, "./a/");
                add_dir(&b, "a");
                add_file(&b, "a/b/d", 0644, "d");
                r = run_unpack(s, builder_finish(&b), &l, NULL, &err);
                if (r < 0)
                        fail_msg("tracked %zu: %d %s", tracked[i], r, strempty(err));
                assert_file(s->root_fd, "a/b/c", "c", 0644);
                assert_file(s->root_fd, "a/b/d", "d", 0644);
        }
}

/* "s/" and "s/." name the symlink s, yet fstatat() of them follows it: a
 * directory entry so named must not pass as a directory named again. In tar
 * and zip, with the table and once it is given up. */
static void test_tracked_dir_over_symlink(void **state) {
        static const char *const names[] = { "s/", "s/.", "./s//" };
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(tracked); i++)
                for (size_t k = 0; k < ELEMENTSOF(names); k++)
                        for (int zip = 0; zip < 2; zip++) {
                                UnpackLimits l = limits_tracked(tracked[i]);
                                Builder b = builder_new(COMPRESS_NONE, zip);

                                scratch_reset(s);
                                add_dir(&b, "d/");
                                add_file(&b, "d/f", 0644, "f");
                                add_symlink(&b, "s", "d");
                                add_dir(&b, names[k]);
                                assert_rejected(s, builder_finish(&b), &l, -EBADMSG,
                                                "duplicate entry");
                        }
}

/* A file named again as a directory ("f/": fstatat() fails ENOTDIR) is a
 * duplicate, not a reason to give up the table. */
static void test_tracked_file_then_dir(void **state) {
        static const char *const names[] = { "f/", "f/.", "f" };
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(tracked); i++)
                for (size_t k = 0; k < ELEMENTSOF(names); k++)
                        for (int zip = 0; zip < 2; zip++) {
                                UnpackLimits l = limits_tracked(tracked[i]);
                                Builder b = builder_new(COMPRESS_NONE, zip);

                                scratch_reset(s);
                                add_file(&b, "f", 0644, "f");
                                add_dir(&b, names[k]);
                                assert_rejected(s, builder_finish(&b), &l, -EBADMSG,
                                                "duplicate entry");
                        }
}

/* The escape chain of tests/integration/hostile.py in zip: each link stays
 * inside by itself, together they would lead out. */
static void test_tracked_zip_chain(void **state) {
        Scratch *s = *state;

        for (size_t i = 0; i < ELEMENTSOF(tracked); i++) {
                UnpackLimits l = limits_tracked(tracked[i]);
                Builder b = builder_new(COMPRESS_NONE, true);

                scratch_reset(s);
                add_dir(&b, "a/");
                add_symlink(&b, "a/l", ".");
                add_symlink(&b, "a/l/l/l/m", "../../../..");
                add_file(&b, "a/m/ESCAPED", 0644, "x");
                assert_rejected(s, builder_finish(&b), &l, -EBADMSG, "through");
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_check_path),
                cmocka_unit_test(test_check_path_limits),
                cmocka_unit_test(test_link_target_inside),
#define T(f) cmocka_unit_test_setup_teardown(f, scratch_setup, scratch_teardown)
                T(test_good),
                T(test_zip),
                T(test_zip_traversal),
                T(test_dotdot),
                T(test_absolute),
                T(test_symlink_out),
                T(test_symlink_then_write),
                T(test_write_through_inside_symlink),
                T(test_hardlink),
                T(test_special_files),
                T(test_setuid),
                T(test_duplicate),
                T(test_file_under_file),
                T(test_too_deep),
                T(test_max_entries),
                T(test_bomb),
                T(test_bomb_streamed),
                T(test_truncated),
                T(test_garbage),
                T(test_empty),
                T(test_only_root),
                T(test_zip_symlink_out),
                T(test_long_path),
                T(test_root_not_a_dir),
                T(test_tracked_through_symlink),
                T(test_tracked_hardlink_through_symlink),
                T(test_tracked_dir_over_symlink),
                T(test_tracked_file_then_dir),
                T(test_tracked_zip_chain),
                T(test_tracked_duplicates),
                T(test_tracked_dirs_again),
#undef T
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
