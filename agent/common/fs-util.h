/* fs-util.h: directory helpers that never follow symlinks out of a tree. */
#pragma once

#include <dirent.h>
#include <stdbool.h>
#include <sys/types.h>

static inline void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
}

/* Remove dirfd/name recursively; symlinks are removed, never followed.
 * Missing is success. */
int rm_rf_at(int dirfd, const char *name);

/* Remove every entry of dirfd whose name starts with prefix (leftovers of
 * an interrupted run: ".staging-", ".trash-", ".current.tmp-"). Returns how
 * many were removed, or the first error. */
int rm_rf_prefixed_at(int dirfd, const char *prefix);

/* opendir() of dirfd itself through a new open file description: a dup()
 * would share the read offset with every other reader of dirfd. */
DIR *opendir_at(int dirfd);

/* mkdir -p for an absolute path; mode applies to created components. */
int mkdir_p(const char *path, mode_t mode);

/* readlinkat into a malloc'd string. */
int readlink_at(int dirfd, const char *name, char **ret);

/* Write data to dirfd/name atomically: temp file, fsync, rename, fsync dir. */
int write_file_atomic_at(int dirfd, const char *name, const void *data, size_t n, mode_t mode);

/* Does a release exist: 1 when dirfd/name is a directory (a symlink is not
 * followed), 0 when nothing is there, -ENOTDIR when something else is,
 * -errno when it cannot be told. */
int dir_exists_at(int dirfd, const char *name);

/* releases_dir/sha is a directory, as dir_exists_at() sees it. */
bool release_dir_exists(const char *releases_dir, const char *sha);

/* The sha a "current"-style symlink points to ("releases/<sha>"), or -ENOENT. */
int release_link_sha(int root_fd, const char *link_name, char **ret_sha);
