/* fuzz-unpack.c: an untrusted archive unpacked into an empty release
 * directory. Whatever the archive holds and whether or not it is refused,
 * nothing may land outside the release: the directories around it stay as
 * they were, and what is inside holds no device, fifo or setuid file, no
 * symlink whose target leaves the tree, and no hardlink to a file outside. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "artifact/unpack.h"
#include "fuzz.h"

/* sandbox/outside and sandbox/a/b/release: an escape by ".." or through a
 * symlink to a sibling shows up as a new entry in sandbox, a, b or outside. */
static char sandbox[128], release[160];
static int cwd_fd = -1;

static size_t count_entries(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t n = 0;

        if (!d)
                abort();
        while ((de = readdir(d)))
                n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
        closedir(d);
        return n;
}

static void check_around(void) {
        static const char *const dirs[][2] = {
                { "", "2" }, { "/outside", "0" }, { "/a", "1" }, { "/a/b", "1" },
        };
        char path[192];

        for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
                snprintf(path, sizeof path, "%s%s", sandbox, dirs[i][0]);
                if (count_entries(path) != (size_t) atoi(dirs[i][1])) {
                        fprintf(stderr, "unpack wrote outside the release: %s changed\n", path);
                        abort();
                }
        }
}

static int check_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        const char *rel = path + strlen(release) + 1;
        char target[4096];
        ssize_t n;

        if (ftw->level == 0)
                return 0;
        if (!S_ISREG(st->st_mode) && !S_ISDIR(st->st_mode) && !S_ISLNK(st->st_mode))
                fprintf(stderr, "unpack made a special file: %s\n", rel), abort();
        if (S_ISREG(st->st_mode) && (st->st_mode & (S_ISUID | S_ISGID)))
                fprintf(stderr, "unpack made a setuid/setgid file: %s\n", rel), abort();
        if (S_ISLNK(st->st_mode)) {
                n = readlink(path, target, sizeof target - 1);
                if (n < 0)
                        abort();
                target[n] = '\0';
                if (!unpack_link_target_inside(rel, target))
                        fprintf(stderr, "unpack made a symlink out: %s -> %s\n", rel, target), abort();
        }
        return 0;
}

/* Every link of a regular file is inside: each inode with several links
 * has as many names in the tree as its link count. */
#define LINKED_MAX 2048
static struct { ino_t ino; nlink_t nlink, names; } linked[LINKED_MAX];
static size_t n_linked;

static int count_links(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        size_t i;

        if (!S_ISREG(st->st_mode) || st->st_nlink < 2)
                return 0;
        for (i = 0; i < n_linked && linked[i].ino != st->st_ino; i++)
                ;
        if (i == LINKED_MAX)
                abort();
        if (i == n_linked)
                linked[n_linked++] = (typeof(linked[0])) { st->st_ino, st->st_nlink, 0 };
        linked[i].names++;
        return 0;
}

static bool links_inside(void) {
        for (size_t i = 0; i < n_linked; i++)
                if (linked[i].names != linked[i].nlink)
                        return false;
        return true;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path) < 0 ? -1 : 0;
}

static void fresh_sandbox(void) {
        static const char *const dirs[] = { "", "/outside", "/a", "/a/b", "/a/b/release" };
        char path[192];

        if (nftw(sandbox, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
                abort();
        for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
                snprintf(path, sizeof path, "%s%s", sandbox, dirs[i]);
                if (mkdir(path, 0755) < 0)
                        abort();
        }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
        snprintf(sandbox, sizeof sandbox, "%s/sandbox", fuzz_scratch_dir());
        snprintf(release, sizeof release, "%s/a/b/release", sandbox);
        cwd_fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return cwd_fd < 0 ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        /* odd sizes: a table of 8 paths, so that checking on disk again
         * (SECURE_SYMLINKS) after the table is given up is fuzzed too */
        UnpackLimits limits = { .max_unpacked_size = 1024 * 1024, .max_entries = 1000,
                                .max_tracked_paths = size & 1 ? 8 : 0 };
        char archive[160], *error = NULL;
        int afd, dfd, r;

        if (size > 1024 * 1024)
                return -1;
        fresh_sandbox();
        snprintf(archive, sizeof archive, "%s/archive", fuzz_scratch_dir());
        fuzz_write_file(archive, data, size);
        afd = open(archive, O_RDONLY | O_CLOEXEC);
        dfd = open(release, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (afd < 0 || dfd < 0)
                abort();
        r = unpack_archive(afd, dfd, &limits, NULL, &error);
        /* unpack changes the working directory; libFuzzer writes crash files relative to it */
        if (fchdir(cwd_fd) < 0)
                abort();
        if (r < 0 && !error)
                abort();
        close(afd);
        close(dfd);
        free(error);
        check_around();
        if (nftw(release, check_entry, 16, FTW_PHYS) != 0)
                abort();
        n_linked = 0;
        if (nftw(release, count_links, 16, FTW_PHYS) != 0)
                abort();
        if (!links_inside())
                fprintf(stderr, "unpack made a hardlink to a file outside the release\n"), abort();
        return 0;
}
