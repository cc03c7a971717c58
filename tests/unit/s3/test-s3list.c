/* test-s3list.c: the expat parsers for ListObjectsV2 pages and <Error>
 * bodies (s3-list.c), fed documents as S3 and s3rver write them. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "s3/s3-list.h"
#include "common/util.h"

#define HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" \
             "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">" \
             "<Name>acme</Name><Prefix>api/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>"

typedef struct Seen {
        size_t n;
        char keys[4][64];
        char etags[4][64];
        uint64_t usec[4];
        uint64_t size[4];
        int stop_at;                   /* 1-based; 0: never */
} Seen;

static int seen_cb(const S3Object *o, void *userdata) {
        Seen *s = userdata;

        assert_true(s->n < 4);
        snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", o->key);
        snprintf(s->etags[s->n], sizeof(s->etags[0]), "%s", o->etag);
        s->usec[s->n] = o->last_modified_usec;
        s->size[s->n] = o->size;
        s->n++;
        return (int) s->n == s->stop_at ? -ECANCELED : 0;
}

static int parse(const char *xml, Seen *s, S3ListPage *page, char **error) {
        return s3_list_parse(xml, strlen(xml), seen_cb, s, page, error);
}

static void test_list_page(void **state) {
        const char *xml = HEAD
                "<IsTruncated>true</IsTruncated>"
                "<Contents><Key>api/3f2c1ab.tar.gz</Key><LastModified>2026-11-27T10:00:00.500Z</LastModified>"
                "<ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag><Size>1048576</Size>"
                "<Owner><ID>x</ID><DisplayName>y</DisplayName></Owner><StorageClass>STANDARD</StorageClass></Contents>"
                "<Contents><Key>api/a&amp;b &lt;c&gt;</Key><LastModified>2026-11-27T10:00:01Z</LastModified>"
                "<ETag>\"abc-2\"</ETag><Size>0</Size></Contents>"
                "<CommonPrefixes><Prefix>api/x/</Prefix></CommonPrefixes>"
                "<NextContinuationToken>ab/c+d==</NextContinuationToken>"
                "</ListBucketResult>";
        _cleanup_(s3_list_page_done) S3ListPage page = {};
        _cleanup_free_ char *error = NULL;
        Seen s = {};

        assert_int_equal(parse(xml, &s, &page, &error), 0);
        assert_null(error);
        assert_int_equal(s.n, 2);
        assert_string_equal(s.keys[0], "api/3f2c1ab.tar.gz");
        assert_string_equal(s.etags[0], "d41d8cd98f00b204e9800998ecf8427e");
        assert_int_equal(s.usec[0], UINT64_C(1795773600500000));
        assert_int_equal(s.size[0], 1048576);
        assert_string_equal(s.keys[1], "api/a&b <c>");
        assert_string_equal(s.etags[1], "abc-2");
        assert_int_equal(s.size[1], 0);
        assert_true(page.truncated);
        assert_string_equal(page.next_token, "ab/c+d==");
        assert_int_equal(page.n_objects, 2);
}

static void test_list_last_page(void **state) {
        const char *xml = HEAD "<IsTruncated>false</IsTruncated></ListBucketResult>";
        _cleanup_(s3_list_page_done) S3ListPage page = {};
        _cleanup_free_ char *error = NULL;
        Seen s = {};

        assert_int_equal(parse(xml, &s, &page, &error), 0);
        assert_int_equal(s.n, 0);
        assert_false(page.truncated);
        assert_null(page.next_token);
}

static void test_list_stop(void **state) {
        const char *xml = HEAD
                "<Contents><Key>a</Key><LastModified>2026-11-27T10:00:00Z</LastModified><ETag>\"1\"</ETag><Size>1</Size></Contents>"
                "<Contents><Key>b</Key><LastModified>2026-11-27T10:00:00Z</LastModified><ETag>\"2\"</ETag><Size>2</Size></Contents>"
                "</ListBucketResult>";
        S3ListPage page = {};
        _cleanup_free_ char *error = NULL;
        Seen s = { .stop_at = 1 };

        assert_int_equal(parse(xml, &s, &page, &error), -ECANCELED);
        assert_int_equal(s.n, 1);
        assert_null(error);
}

static void check_bad(const char *xml) {
        S3ListPage page = {};
        _cleanup_free_ char *error = NULL;
        Seen s = {};

        assert_int_equal(parse(xml, &s, &page, &error), -EBADMSG);
        assert_non_null(error);
        assert_int_equal(s.n, 0);
}

static void test_list_bad(void **state) {
        char deep[1024] = HEAD;

        check_bad("");
        check_bad("not xml");
        check_bad(HEAD);                                                    /* truncated */
        check_bad("<Error><Code>AccessDenied</Code></Error>");
        check_bad(HEAD "<Contents><Key>a</Key><Size>1</Size></Contents></ListBucketResult>");
        check_bad(HEAD "<Contents><Key>a</Key><LastModified>yesterday</LastModified>"
                  "<ETag>\"1\"</ETag><Size>1</Size></Contents></ListBucketResult>");
        check_bad(HEAD "<Contents><Key>a</Key><LastModified>2026-11-27T10:00:00Z</LastModified>"
                  "<ETag>\"1\"</ETag><Size>-1</Size></Contents></ListBucketResult>");
        check_bad(HEAD "<Contents><Key>a<b/></Key></Contents></ListBucketResult>");
        check_bad(HEAD "<IsTruncated>maybe</IsTruncated></ListBucketResult>");
        check_bad("<!DOCTYPE x [<!ENTITY a \"aaaaaaaa\">]><ListBucketResult>&a;</ListBucketResult>");
        for (int i = 0; i < 20; i++)
                strcat(deep, "<a>");
        check_bad(deep);
}

static void test_list_long_text(void **state) {
        _cleanup_free_ char *xml = NULL;
        char big[5000];

        memset(big, 'k', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        assert_true(asprintf(&xml, HEAD "<Contents><Key>%s</Key></Contents></ListBucketResult>", big) > 0);
        check_bad(xml);
}

static void test_error_body(void **state) {
        const char *xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                          "<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.\n</Message>"
                          "<Key>api/x</Key><RequestId>1</RequestId></Error>";
        _cleanup_free_ char *code = NULL, *message = NULL;

        assert_int_equal(s3_error_parse(xml, strlen(xml), &code, &message), 0);
        assert_string_equal(code, "NoSuchKey");
        assert_string_equal(message, "The specified key does not exist.?");
        assert_int_equal(s3_error_parse("<html/>", 7, &code, &message), -EBADMSG);
}

static void test_error_body_broken(void **state) {
        /* An unescaped '&' after the Code: keep what was read before it. */
        const char *xml = "<Error><Code>SignatureDoesNotMatch</Code><Message>no</Message>"
                          "<Resource>/b?list-type=2&prefix=a</Resource></Error>";
        _cleanup_free_ char *code = NULL, *message = NULL;

        assert_int_equal(s3_error_parse(xml, strlen(xml), &code, &message), 0);
        assert_string_equal(code, "SignatureDoesNotMatch");
        assert_string_equal(message, "no");
        assert_int_equal(s3_error_parse("<Error><Message>x&y</Message></Error>", 37, &code, &message), -EBADMSG);
}

static void test_etag_unquote(void **state) {
        _cleanup_free_ char *a = s3_etag_unquote(" \"abc\"\r\n", 8), *b = s3_etag_unquote("abc", 3),
                            *c = s3_etag_unquote("\"", 1), *d = s3_etag_unquote("\"\"", 2);

        assert_string_equal(a, "abc");
        assert_string_equal(b, "abc");
        assert_string_equal(c, "\"");
        assert_string_equal(d, "");
}

static void test_content_type(void **state) {
        _cleanup_free_ char *html = NULL, *empty = NULL;
        char *none = NULL;

        assert_int_equal(s3_content_type_is_xml(NULL, &none), 1);
        assert_int_equal(s3_content_type_is_xml("application/xml", &none), 1);
        assert_int_equal(s3_content_type_is_xml("text/XML; charset=utf-8", &none), 1);
        assert_null(none);
        assert_int_equal(s3_content_type_is_xml("text/html; charset=utf-8", &html), 0);
        assert_string_equal(html, "text/html");
        assert_int_equal(s3_content_type_is_xml("", &empty), 0);
        assert_string_equal(empty, "");
}

static void test_token_set(void **state) {
        _cleanup_(s3_token_set_done) S3TokenSet seen = {};
        char token[32];

        /* the same token again, and a cycle back to an older one */
        assert_int_equal(s3_token_set_add(&seen, "a"), 0);
        assert_int_equal(s3_token_set_add(&seen, "a"), 1);
        assert_int_equal(s3_token_set_add(&seen, "b/+="), 0);
        assert_int_equal(s3_token_set_add(&seen, "a"), 1);
        /* many distinct tokens grow the set and stay distinct */
        for (unsigned i = 0; i < 1000; i++) {
                snprintf(token, sizeof(token), "token-%u", i);
                assert_int_equal(s3_token_set_add(&seen, token), 0);
        }
        assert_int_equal(s3_token_set_add(&seen, "token-517"), 1);
        assert_int_equal(seen.n, 1002);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_list_page),
                cmocka_unit_test(test_list_last_page),
                cmocka_unit_test(test_list_stop),
                cmocka_unit_test(test_list_bad),
                cmocka_unit_test(test_list_long_text),
                cmocka_unit_test(test_error_body),
                cmocka_unit_test(test_error_body_broken),
                cmocka_unit_test(test_etag_unquote),
                cmocka_unit_test(test_content_type),
                cmocka_unit_test(test_token_set),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
