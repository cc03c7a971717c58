/* fs-space.h: say which file system a path is on and how much room it has,
 * for the message of a write that failed (docs/design.md, "Failure
 * handling": a full or read-only disk must be named, not guessed at). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define FS_SPACE_TEXT_MAX (4096 + 256)  /* a path plus the figures */

/* "1.5K", "12.0M", "3.2G": binary units, one decimal, for messages. */
void fs_format_bytes(uint64_t n, char buf[static 16]);

/* The mount point of path: the topmost directory above it on the same mount
 * (statx mount id; st_dev where the kernel has no mount ids). A bind mount
 * counts as its own mount. On error, path itself. */
void fs_mount_point(const char *path, char *buf, size_t size);

/* "tmpfs at /srv/web: 12.0M free of 16.0M" plus ", read-only" when mounted
 * so, plus "; needs 40.0M" when need > 0 (what the write was going to take,
 * when known). Never fails: a statfs error is described instead. */
void fs_space_describe(const char *path, uint64_t need, char buf[static FS_SPACE_TEXT_MAX]);

/* The same for the file system of fd, open on path: for a worker that may
 * open its directory but not look at the path's parents. */
void fs_space_describe_fd(int fd, const char *path, uint64_t need, char buf[static FS_SPACE_TEXT_MAX]);

/* Bytes an unprivileged writer may still use on path's file system. */
int fs_space_free(const char *path, uint64_t *ret);
