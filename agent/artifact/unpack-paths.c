/* unpack-paths.c: an open-addressing set of keyed path hashes with a type.
 * The key is random per extraction (SipHash-2-4, libsodium's
 * crypto_shorthash), so an archive cannot be built to make the probe chains
 * long or to collide on purpose. */
#define _GNU_SOURCE
#include "artifact/unpack-paths.h"

#include <errno.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define PATHS_MAX_DEFAULT (UINT64_C(1) << 19)
#define PATHS_FIRST_CAPACITY 1024
#define TYPE_MASK UINT64_C(3)

int unpack_paths_init(UnpackPaths *p, size_t max_count) {
        *p = (UnpackPaths) { .max_count = max_count ?: PATHS_MAX_DEFAULT };
        if (getrandom(p->key, sizeof p->key, 0) != (ssize_t) sizeof p->key)
                return -EIO;
        p->slots = calloc(PATHS_FIRST_CAPACITY, sizeof *p->slots);
        if (!p->slots)
                return -ENOMEM;
        p->capacity = PATHS_FIRST_CAPACITY;
        return 0;
}

void unpack_paths_done(UnpackPaths *p) {
        free(p->slots);
        p->slots = NULL;
        p->capacity = p->count = 0;
}

uint64_t unpack_paths_hash(const UnpackPaths *p, const char *path, size_t n) {
        unsigned char out[crypto_shorthash_BYTES];
        uint64_t h;

        crypto_shorthash(out, (const unsigned char *) path, n, p->key);
        memcpy(&h, out, sizeof h);
        h &= ~TYPE_MASK;
        return h ?: TYPE_MASK + 1;    /* 0 marks a free slot */
}

static size_t probe(const uint64_t *slots, size_t capacity, uint64_t hash) {
        size_t i = (size_t) (hash >> 2) & (capacity - 1);

        while (slots[i] != 0 && (slots[i] & ~TYPE_MASK) != (hash & ~TYPE_MASK))
                i = (i + 1) & (capacity - 1);
        return i;
}

UnpackPathType unpack_paths_get(const UnpackPaths *p, uint64_t hash) {
        if (!p->slots)
                return UNPACK_PATH_NONE;
        return (UnpackPathType) (p->slots[probe(p->slots, p->capacity, hash)] & TYPE_MASK);
}

static int grow(UnpackPaths *p) {
        size_t capacity = p->capacity * 2;
        uint64_t *slots = calloc(capacity, sizeof *slots);

        if (!slots)
                return -ENOMEM;
        for (size_t i = 0; i < p->capacity; i++)
                if (p->slots[i] != 0)
                        slots[probe(slots, capacity, p->slots[i])] = p->slots[i];
        free(p->slots);
        p->slots = slots;
        p->capacity = capacity;
        return 0;
}

int unpack_paths_put(UnpackPaths *p, uint64_t hash, UnpackPathType type) {
        size_t i;
        int r;

        if (!p->slots)
                return -ENOMEM;
        i = probe(p->slots, p->capacity, hash);
        if (p->slots[i] != 0)
                return 0;
        if (p->count >= p->max_count)
                return -E2BIG;
        /* at most half full: probe chains stay short */
        if ((p->count + 1) * 2 > p->capacity) {
                r = grow(p);
                if (r < 0)
                        return r;
                i = probe(p->slots, p->capacity, hash);
        }
        p->slots[i] = (hash & ~TYPE_MASK) | (uint64_t) type;
        p->count++;
        return 0;
}

int unpack_paths_normalize(const char *path, char *buf, size_t n) {
        size_t len = 0;

        for (const char *s = path;;) {
                size_t c;

                while (*s == '/')
                        s++;
                if (!*s)
                        break;
                c = strcspn(s, "/");
                if (c == 1 && s[0] == '.') {
                        s++;
                        continue;
                }
                if (len + (len > 0) + c >= n)
                        return -ENAMETOOLONG;
                if (len > 0)
                        buf[len++] = '/';
                memcpy(buf + len, s, c);
                len += c;
                s += c;
        }
        if (n == 0)
                return -ENAMETOOLONG;
        buf[len] = '\0';
        return (int) len;
}
