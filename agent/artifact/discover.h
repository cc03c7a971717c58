/* discover.h: the pure half of the discover step (docs/design.md, "Steps"):
 * which keys are artifacts, which artifact is the newest, what a pointer
 * object says. No I/O here; step-discover.c feeds it S3 listings. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "s3/s3.h"

/* true iff key is exactly prefix + sha + suffix with sha 7..40 lowercase hex;
 * then ret_sha holds the sha. Nested keys ("p/x/<sha>.tar.gz"), sidecars
 * ("<sha>.tar.gz.sha256"), upper case and any other name: false. */
bool discover_match_key(const char *prefix, const char *suffix, const char *key, char ret_sha[static 41]);

/* true when (a_usec, a_key) is newer than (b_usec, b_key): greater
 * LastModified, ties broken by the greater key. */
bool discover_is_newer(uint64_t a_usec, const char *a_key, uint64_t b_usec, const char *b_key);

/* The newest artifact seen so far, with its sidecars. Zero-initialize, feed
 * every listed object to discover_best_offer() in listing order, free with
 * discover_best_done(). S3 lists keys in byte order, so "<key>.minisig" and
 * "<key>.sha256" come after "<key>": one listing says both which artifact
 * is the newest and whether its sidecars are there. */
typedef struct DiscoverBest {
        bool found;
        char sha[41];
        char *key;
        char *etag;
        uint64_t last_modified_usec;
        uint64_t size;
        bool sha256;                   /* <key>.sha256 listed */
        bool minisig;                  /* <key>.minisig listed */
} DiscoverBest;
void discover_best_done(DiscoverBest *b);

/* Keeps o when its key matches and it is newer than the best so far, or
 * notes it as a sidecar of the best. Returns 1 when taken, 0 when not,
 * -ENOMEM. */
int discover_best_offer(DiscoverBest *b, const char *prefix, const char *suffix, const S3Object *o);

/* A pointer object's body: the sha (7..40 lowercase hex) first, then
 * nothing or whitespace and fields that this agent ignores. NUL bytes or
 * anything else: -EBADMSG. */
int discover_parse_pointer(const char *body, size_t n, char ret_sha[static 41]);
