/* test-unpack.c: the pure path checks, then real archives built with
 * libarchive's writer and extracted into a scratch tree. */
#define _GNU_SOURCE
#include "unpack-fixture.h"

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
#undef T
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
