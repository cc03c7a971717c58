/* test-credentials.c: the pure parts of credentials.c (IMDS endpoint, role
 * listing, the role credentials document, refresh timing) and the choice of
 * source. The IMDS conversation itself is tested against a fake IMDS in
 * tests/integration/test_s3_credentials.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "s3/credentials.h"
#include "common/util.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define TOKEN "IQoJb3JpZ2luX2VjEXAMPLETOKEN=="

static void test_endpoint(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL, *c = NULL;
        char *x = NULL;

        assert_int_equal(credentials_imds_endpoint(NULL, &a), 0);
        assert_string_equal(a, "http://169.254.169.254");
        assert_int_equal(credentials_imds_endpoint("http://127.0.0.1:8111///", &b), 0);
        assert_string_equal(b, "http://127.0.0.1:8111");
        assert_int_equal(credentials_imds_endpoint("http://[fd00:ec2::254]", &c), 0);
        assert_string_equal(c, "http://[fd00:ec2::254]");
        assert_int_equal(credentials_imds_endpoint("169.254.169.254", &x), -EINVAL);
        assert_int_equal(credentials_imds_endpoint("ftp://x", &x), -EINVAL);
        assert_int_equal(credentials_imds_endpoint("http://", &x), -EINVAL);
        assert_int_equal(credentials_imds_endpoint("http://a b", &x), -EINVAL);
        assert_null(x);
}

static void test_role(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL;
        char *x = NULL;

        assert_int_equal(credentials_parse_role("web-server", 10, &a), 0);
        assert_string_equal(a, "web-server");
        assert_int_equal(credentials_parse_role("role+=,.@_-1\nother\n", 20, &b), 0);
        assert_string_equal(b, "role+=,.@_-1");
        assert_int_equal(credentials_parse_role("", 0, &x), -EBADMSG);
        assert_int_equal(credentials_parse_role("../etc", 6, &x), -EBADMSG);
        assert_int_equal(credentials_parse_role("a b", 3, &x), -EBADMSG);
        assert_int_equal(credentials_parse_role("a\0b", 3, &x), -EBADMSG);
        assert_null(x);
}

static int parse(const char *json, Credentials *c, char **error) {
        return credentials_parse_imds(json, strlen(json), c, error);
}

static void test_document(void **state) {
        _cleanup_(credentials_done) Credentials c = {};
        _cleanup_free_ char *error = NULL;

        assert_int_equal(parse("{\"Code\":\"Success\",\"LastUpdated\":\"2026-11-27T09:00:00Z\",\"Type\":\"AWS-HMAC\","
                               "\"AccessKeyId\":\"ASIAEXAMPLE\",\"SecretAccessKey\":\"" SECRET "\","
                               "\"Token\":\"" TOKEN "\",\"Expiration\":\"2026-11-27T16:00:00Z\"}", &c, &error), 0);
        assert_string_equal(c.access_key_id, "ASIAEXAMPLE");
        assert_string_equal(c.secret_access_key, SECRET);
        assert_string_equal(c.session_token, TOKEN);
        assert_int_equal(c.expiration_usec, UINT64_C(1795795200) * USEC_PER_SEC);
        assert_null(error);
}

static void check_bad(const char *json) {
        _cleanup_(credentials_done) Credentials c = {};
        _cleanup_free_ char *error = NULL;

        assert_int_equal(parse(json, &c, &error), -EBADMSG);
        assert_non_null(error);
        assert_null(strstr(error, SECRET));     /* never quoted */
        assert_null(strstr(error, TOKEN));
        assert_null(c.access_key_id);
}

static void test_bad_documents(void **state) {
        check_bad("");
        check_bad("[]");
        check_bad("{\"Code\":\"Failure\",\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\","
                  "\"Token\":\"" TOKEN "\",\"Expiration\":\"2026-11-27T16:00:00Z\"}");
        check_bad("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Expiration\":\"2026-11-27T16:00:00Z\"}");
        check_bad("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\"}");
        check_bad("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\","
                  "\"Expiration\":\"tomorrow\"}");
        check_bad("{\"AccessKeyId\":\"A B\",\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\","
                  "\"Expiration\":\"2026-11-27T16:00:00Z\"}");
        check_bad("{\"AccessKeyId\":\"A\",\"SecretAccessKey\":\"" SECRET "\\n\",\"Token\":\"" TOKEN "\","
                  "\"Expiration\":\"2026-11-27T16:00:00Z\"}");
        check_bad("{\"AccessKeyId\":\"A\",\"AccessKeyId\":\"B\",\"SecretAccessKey\":\"" SECRET "\","
                  "\"Token\":\"" TOKEN "\",\"Expiration\":\"2026-11-27T16:00:00Z\"}");
}

static void test_refresh_timing(void **state) {
        Credentials forever = { .expiration_usec = 0 };
        Credentials c = { .expiration_usec = 3600 * USEC_PER_SEC };

        assert_false(credentials_need_refresh(&forever, UINT64_MAX / 2));
        assert_true(credentials_usable(&forever, UINT64_MAX / 2));
        assert_false(credentials_need_refresh(&c, c.expiration_usec - CREDENTIALS_REFRESH_BEFORE_USEC - 1));
        assert_true(credentials_need_refresh(&c, c.expiration_usec - CREDENTIALS_REFRESH_BEFORE_USEC));
        assert_true(credentials_usable(&c, c.expiration_usec - 61 * USEC_PER_SEC));
        assert_false(credentials_usable(&c, c.expiration_usec - 60 * USEC_PER_SEC));
        assert_false(credentials_usable(&c, c.expiration_usec + 1));
}

static void test_sources(void **state) {
        S3Config cfg = { .region = (char *) "us-east-1", .credentials = CREDENTIALS_STATIC,
                         .access_key_id = (char *) "AKIDSTATIC", .secret_access_key = (char *) SECRET };
        CredentialsProvider *p = NULL;
        const Credentials *c;
        _cleanup_free_ char *error = NULL;

        assert_int_equal(credentials_provider_new(&cfg, &p, &error), 0);
        assert_int_equal(credentials_get(p, &c, &error), 0);
        assert_string_equal(c->access_key_id, "AKIDSTATIC");
        assert_null(c->session_token);
        assert_string_equal(credentials_provider_source(p), "static");
        p = credentials_provider_free(p);

        cfg.credentials = CREDENTIALS_AUTO;
        assert_int_equal(setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1), 0);
        assert_int_equal(setenv("AWS_SECRET_ACCESS_KEY", SECRET, 1), 0);
        assert_int_equal(setenv("AWS_SESSION_TOKEN", TOKEN, 1), 0);
        assert_int_equal(credentials_provider_new(&cfg, &p, &error), 0);
        assert_int_equal(credentials_get(p, &c, &error), 0);
        assert_string_equal(c->access_key_id, "AKIDENV");
        assert_string_equal(c->session_token, TOKEN);
        assert_string_equal(credentials_provider_source(p), "environment");
        assert_int_equal(credentials_provider_imds_requests(p), 0);
        p = credentials_provider_free(p);

        /* Without the environment, auto means IMDS, which can be disabled. */
        unsetenv("AWS_ACCESS_KEY_ID");
        assert_int_equal(setenv("AWS_EC2_METADATA_DISABLED", "true", 1), 0);
        assert_int_equal(credentials_provider_new(&cfg, &p, &error), -ENOKEY);
        assert_non_null(strstr(error, "AWS_EC2_METADATA_DISABLED"));
        unsetenv("AWS_EC2_METADATA_DISABLED");
        assert_int_equal(setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "bogus", 1), 0);
        assert_int_equal(credentials_provider_new(&cfg, &p, &error), -EINVAL);
        unsetenv("AWS_EC2_METADATA_SERVICE_ENDPOINT");
        assert_int_equal(credentials_provider_new(&cfg, &p, &error), 0);
        assert_string_equal(credentials_provider_source(p), "imds");
        assert_int_equal(credentials_provider_imds_requests(p), 0);    /* nothing asked yet */
        p = credentials_provider_free(p);

        cfg.credentials = CREDENTIALS_ENV;
        assert_int_equal(credentials_provider_new(&cfg, &p, &error), -ENOKEY);
        cfg.credentials = CREDENTIALS_STATIC;
        cfg.secret_access_key = NULL;
        assert_int_equal(credentials_provider_new(&cfg, &p, &error), -ENOKEY);
        cfg.secret_access_key = (char *) "has a space";
        assert_int_equal(credentials_provider_new(&cfg, &p, &error), -EINVAL);
        assert_null(strstr(error, "has a space"));
        assert_null(p);
        unsetenv("AWS_SECRET_ACCESS_KEY");
        unsetenv("AWS_SESSION_TOKEN");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_endpoint),
                cmocka_unit_test(test_role),
                cmocka_unit_test(test_document),
                cmocka_unit_test(test_bad_documents),
                cmocka_unit_test(test_refresh_timing),
                cmocka_unit_test(test_sources),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
