/* unpack.h: extract an untrusted archive with libarchive into an empty
 * directory, refusing anything that could escape it (docs/design.md, "Steps"). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct UnpackLimits {
        uint64_t max_unpacked_size;    /* sum of regular file sizes */
        uint64_t max_entries;
        size_t max_path_length;        /* default 4096 */
        unsigned max_depth;            /* default 64 */
        size_t max_tracked_paths;      /* paths checked in memory (0: default); past
                                        * them, with a stat() each (tests lower it) */
} UnpackLimits;

typedef struct UnpackStats {
        uint64_t entries;
        uint64_t bytes;
} UnpackStats;

/* Extract the archive readable from archive_fd into dir_fd (empty). Formats:
 * tar and zip; filters: gzip, zstd, xz. Changes the working directory to
 * dir_fd (libarchive resolves hardlinks relative to the cwd). Nothing is
 * synced: the caller makes the tree durable in one step (one syncfs() before
 * it publishes, docs/design.md "Steps"). Any libarchive warning fails. */
int unpack_archive(int archive_fd, int dir_fd, const UnpackLimits *limits,
                   UnpackStats *ret_stats, char **ret_error);

/* Pure checks, exported for the unit tests. */

/* 0 when path is relative, not empty, has no ".." component, no longer than
 * max_len and no deeper than max_depth; -EINVAL otherwise. "./a" is fine. */
int unpack_check_path(const char *path, size_t max_len, unsigned max_depth);

/* true when a symlink at entry_path pointing to target resolves inside the
 * tree (lexically: relative target, never above the root). */
bool unpack_link_target_inside(const char *entry_path, const char *target);
