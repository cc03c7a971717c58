/* unpack-paths.h: what unpack_archive() has created so far in its (empty at
 * the start, written by nobody else) staging tree, by path, so that each
 * entry is checked in memory instead of with a stat() of the entry and of
 * every parent (docs/design.md, "Steps"). A keyed 64-bit hash of the path
 * stands for the path: "absent" is exact, a hit may be a collision, which the
 * caller confirms with one fstatat(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum UnpackPathType {
        UNPACK_PATH_NONE,
        UNPACK_PATH_DIR,
        UNPACK_PATH_FILE,              /* a regular file or a hardlink */
        UNPACK_PATH_SYMLINK,
} UnpackPathType;

typedef struct UnpackPaths {
        uint64_t *slots;               /* (hash & ~3) | type; 0 is free */
        size_t capacity;               /* a power of two */
        size_t count;
        size_t max_count;              /* more paths: full */
        uint8_t key[16];               /* SipHash key, random per extraction */
} UnpackPaths;

/* max_count 0: the default (524,288 paths, at most 8 MiB of table). */
int unpack_paths_init(UnpackPaths *p, size_t max_count);
void unpack_paths_done(UnpackPaths *p);

uint64_t unpack_paths_hash(const UnpackPaths *p, const char *path, size_t n);

UnpackPathType unpack_paths_get(const UnpackPaths *p, uint64_t hash);

/* Records hash as type (a hash already there keeps its type). -E2BIG past
 * max_count, -ENOMEM: the caller stops using the table then. */
int unpack_paths_put(UnpackPaths *p, uint64_t hash, UnpackPathType type);

/* Writes the path without empty and "." components, joined by '/', into
 * buf (size n). Returns its length, -ENAMETOOLONG when it does not fit. */
int unpack_paths_normalize(const char *path, char *buf, size_t n);
