/* test-unpack-tracked.c: the checks of the paths an extraction created
 * (agent/artifact/unpack-paths.c), with the table in use and with it given
 * up after 0 to 3 paths: both must refuse the same archives. */
#define _GNU_SOURCE
#include "unpack-fixture.h"

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
#define T(f) cmocka_unit_test_setup_teardown(f, scratch_setup, scratch_teardown)
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
