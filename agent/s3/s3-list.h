/* s3-list.h: the expat parsers for the two XML documents the S3 client
 * reads, a ListObjectsV2 page and an <Error> body. Private to s3.c and its
 * unit tests: no other module includes this. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "s3/s3.h"

typedef struct S3ListPage {
        bool truncated;                /* <IsTruncated>true</IsTruncated> */
        char *next_token;              /* <NextContinuationToken>, malloc'd, may be NULL */
        size_t n_objects;
} S3ListPage;
void s3_list_page_done(S3ListPage *p);

/* Parse one ListObjectsV2 page, calling cb for each <Contents> in document
 * order. A document that is not a ListBucketResult, has a DOCTYPE, nests
 * too deep, carries an oversized text or an incomplete <Contents>:
 * -EBADMSG. cb's negative return stops the parse and is returned. */
int s3_list_parse(const char *xml, size_t n, s3_object_cb cb, void *userdata,
                  S3ListPage *ret_page, char **ret_error);

/* Parse an <Error><Code>..</Code><Message>..</Message></Error> body. Both
 * strings are malloc'd, NULL when absent, reduced to printable ASCII and
 * capped in length, so they can go into log lines as they are. A document
 * that breaks after its <Code> still gives what was read. */
int s3_error_parse(const char *xml, size_t n, char **ret_code, char **ret_message);

/* An ETag as S3 spells it ("\"abc\"", surrounding blanks) without quotes:
 * malloc'd, NULL on OOM. */
char *s3_etag_unquote(const char *s, size_t n);

/* The Content-Type of a listing: 1 when it names XML or is absent (the
 * parser judges), 0 when it does not, with *ret_type its media type
 * (malloc'd, parameters cut off). */
int s3_content_type_is_xml(const char *content_type, char **ret_type);

/* The continuation tokens of one listing, as 64-bit hashes (8 bytes a page
 * however long S3's tokens are): a server that hands out a token it gave
 * before would loop until the page limit. */
typedef struct S3TokenSet {
        uint64_t *hashes;
        size_t n;
        size_t allocated;
} S3TokenSet;
void s3_token_set_done(S3TokenSet *s);

/* 1: seen before; 0: new, now added; -ENOMEM. */
int s3_token_set_add(S3TokenSet *s, const char *token);
