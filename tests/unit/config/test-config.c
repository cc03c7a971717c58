/* test-config.c: deploy.ini parsing, defaults, validation and the exact
 * "file:line: [section] key: problem" of each error. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <syslog.h>

#include "config/config.h"
#include "common/util.h"

#define MINIMAL_SERVICE "[service \"api\"]\nbucket = acme-artifacts\nroot = /srv/api\nunit = api.service\n"

static char tmp_path[64];

/* Writes text into a fresh temp file whose name is left in tmp_path. */
static const char *write_tmp(const char *text) {
        int fd;

        snprintf(tmp_path, sizeof(tmp_path), "/tmp/test-config-XXXXXX");
        fd = mkstemp(tmp_path);
        assert_true(fd >= 0);
        assert_int_equal(loop_write(fd, text, strlen(text)), 0);
        assert_int_equal(close(fd), 0);
        return tmp_path;
}

static Config *load_ok(const char *text) {
        _cleanup_free_ char *err = NULL;
        Config *c = NULL;
        int r;

        r = config_load(write_tmp(text), &c, &err);
        if (r < 0)
                print_error("unexpected error: %s\n", strempty(err));
        unlink(tmp_path);
        assert_int_equal(r, 0);
        assert_non_null(c);
        assert_null(err);
        return c;
}

/* true when the line of err that starts at p (up to the next newline)
 * contains every string of the NULL-terminated list ap. */
static bool line_has_all(const char *p, va_list ap) {
        size_t n = strcspn(p, "\n");
        const char *s;
        bool ok = true;

        while ((s = va_arg(ap, const char *))) {
                const char *hit = strstr(p, s);
                if (!hit || hit >= p + n)
                        ok = false;
        }
        return ok;
}

/* Loads text, expects it to fail, with one of the reported problems (one
 * per line of the message) starting "FILE:LINE: " and containing every
 * string of the NULL-terminated list. */
static void load_fails(const char *text, unsigned line, ...) {
        _cleanup_free_ char *err = NULL;
        Config *c = NULL;
        char prefix[96];
        va_list ap;
        int r;

        r = config_load(write_tmp(text), &c, &err);
        unlink(tmp_path);
        assert_int_equal(r, -EINVAL);
        assert_null(c);
        assert_non_null(err);
        if (line > 0)
                snprintf(prefix, sizeof(prefix), "%s:%u: ", tmp_path, line);
        else
                snprintf(prefix, sizeof(prefix), "%s: ", tmp_path);
        for (const char *p = err; p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
                bool found;

                if (strncmp(p, prefix, strlen(prefix)) != 0)
                        continue;
                va_start(ap, line);
                found = line_has_all(p, ap);
                va_end(ap);
                if (found)
                        return;
        }
        fail_msg("no problem in \"%s\" starts with \"%s\" and has every expected text", err, prefix);
}

static void test_parse_duration(void **state) {
        uint64_t u;

        assert_int_equal(config_parse_duration("500ms", &u), 0);
        assert_int_equal(u, 500 * USEC_PER_MSEC);
        assert_int_equal(config_parse_duration("30s", &u), 0);
        assert_int_equal(u, 30 * USEC_PER_SEC);
        assert_int_equal(config_parse_duration("5m", &u), 0);
        assert_int_equal(u, 300 * USEC_PER_SEC);
        assert_int_equal(config_parse_duration("1h", &u), 0);
        assert_int_equal(u, 3600 * USEC_PER_SEC);
        assert_int_equal(config_parse_duration("2d", &u), 0);
        assert_int_equal(u, 2 * 86400 * USEC_PER_SEC);
        assert_int_equal(config_parse_duration("7", &u), 0);
        assert_int_equal(u, 7 * USEC_PER_SEC);
        assert_int_equal(config_parse_duration("0", &u), 0);
        assert_int_equal(u, 0);

        const char *bad[] = { "", "-1s", "+1s", " 1s", "1s ", "1.5s", "s", "1x", "1 s", "0x10", "1sec", "1S" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(config_parse_duration(bad[i], &u), -EINVAL);
        assert_int_equal(config_parse_duration(NULL, &u), -EINVAL);
        assert_int_equal(config_parse_duration("18446744073709551616us", &u), -ERANGE);
        assert_int_equal(config_parse_duration("18446744073709551615", &u), -ERANGE);
        assert_int_equal(config_parse_duration("213503983d", &u), -ERANGE);
        assert_int_equal(config_parse_duration("213503982d", &u), 0);
}

static void test_parse_size(void **state) {
        uint64_t u;

        assert_int_equal(config_parse_size("512", &u), 0);
        assert_int_equal(u, 512);
        assert_int_equal(config_parse_size("512K", &u), 0);
        assert_int_equal(u, 512 * 1024);
        assert_int_equal(config_parse_size("64M", &u), 0);
        assert_int_equal(u, UINT64_C(64) << 20);
        assert_int_equal(config_parse_size("2G", &u), 0);
        assert_int_equal(u, UINT64_C(2) << 30);
        assert_int_equal(config_parse_size("1T", &u), 0);
        assert_int_equal(u, UINT64_C(1) << 40);
        assert_int_equal(config_parse_size("3GiB", &u), 0);
        assert_int_equal(u, UINT64_C(3) << 30);

        const char *bad[] = { "", "-1", "1.5G", "G", "1Q", "1 G", "1g", "0x10", " 1" };
        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(config_parse_size(bad[i], &u), -EINVAL);
        assert_int_equal(config_parse_size("16777216T", &u), -ERANGE);
        assert_int_equal(config_parse_size("16777215T", &u), 0);
        assert_int_equal(config_parse_size("99999999999999999999", &u), -ERANGE);
}

static void test_parse_small(void **state) {
        unsigned p;
        bool b;
        mode_t m;
        uint64_t n;

        assert_int_equal(config_parse_percent("20%", &p), 0);
        assert_int_equal(p, 20);
        assert_int_equal(config_parse_percent("100", &p), 0);
        assert_int_equal(p, 100);
        assert_int_equal(config_parse_percent("0%", &p), 0);
        assert_int_equal(p, 0);
        assert_int_equal(config_parse_percent("101%", &p), -ERANGE);
        assert_int_equal(config_parse_percent("-1", &p), -EINVAL);
        assert_int_equal(config_parse_percent("20 %", &p), -EINVAL);
        assert_int_equal(config_parse_percent("", &p), -EINVAL);

        const char *yes[] = { "yes", "true", "on", "1", "YES" }, *no[] = { "no", "false", "off", "0", "Off" };
        for (size_t i = 0; i < ELEMENTSOF(yes); i++) {
                assert_int_equal(config_parse_bool(yes[i], &b), 0);
                assert_true(b);
                assert_int_equal(config_parse_bool(no[i], &b), 0);
                assert_false(b);
        }
        assert_int_equal(config_parse_bool("y", &b), -EINVAL);
        assert_int_equal(config_parse_bool("", &b), -EINVAL);
        assert_int_equal(config_parse_bool("2", &b), -EINVAL);

        assert_int_equal(config_parse_mode("0660", &m), 0);
        assert_int_equal(m, 0660);
        assert_int_equal(config_parse_mode("755", &m), 0);
        assert_int_equal(m, 0755);
        assert_int_equal(config_parse_mode("07777", &m), 0);
        assert_int_equal(config_parse_mode("10000", &m), -ERANGE);
        assert_int_equal(config_parse_mode("0658", &m), -EINVAL);
        assert_int_equal(config_parse_mode("", &m), -EINVAL);
        assert_int_equal(config_parse_mode("-1", &m), -EINVAL);

        assert_int_equal(config_parse_count("200000", &n), 0);
        assert_int_equal(n, 200000);
        assert_int_equal(config_parse_count("1K", &n), -EINVAL);
        assert_int_equal(config_parse_count("18446744073709551616", &n), -ERANGE);
}

static void test_format(void **state) {
        char buf[CONFIG_FORMAT_MAX];
        const char *durations[] = { "0s", "500ms", "60s", "90s", "2m", "5m", "1h", "2d", "1500ms", "7us" };
        const char *sizes[] = { "0", "512", "512K", "64M", "2G", "1T", "1025" };
        uint64_t u;

        for (size_t i = 0; i < ELEMENTSOF(durations); i++) {
                assert_int_equal(config_parse_duration(durations[i], &u), 0);
                assert_string_equal(config_format_duration(u, buf), durations[i]);
        }
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                assert_int_equal(config_parse_size(sizes[i], &u), 0);
                assert_string_equal(config_format_size(u, buf), sizes[i]);
        }
        assert_string_equal(config_format_duration(120 * USEC_PER_SEC, buf), "2m");
        assert_string_equal(config_format_size(UINT64_C(8) << 30, buf), "8G");
}

static void test_enums(void **state) {
        assert_string_equal(s3_addressing_to_string(S3_ADDRESSING_VIRTUAL), "virtual");
        assert_string_equal(s3_addressing_to_string(S3_ADDRESSING_PATH), "path");
        assert_null(s3_addressing_to_string(_S3_ADDRESSING_MAX));
        assert_null(s3_addressing_to_string((S3Addressing) -1));
        assert_string_equal(credentials_source_to_string(CREDENTIALS_AUTO), "auto");
        assert_string_equal(credentials_source_to_string(CREDENTIALS_ENV), "env");
        assert_string_equal(credentials_source_to_string(CREDENTIALS_IMDS), "imds");
        assert_string_equal(credentials_source_to_string(CREDENTIALS_STATIC), "static");
        assert_null(credentials_source_to_string(_CREDENTIALS_MAX));
        assert_string_equal(select_mode_to_string(SELECT_NEWEST), "newest");
        assert_string_equal(select_mode_to_string(SELECT_POINTER), "pointer");
        assert_null(select_mode_to_string(_SELECT_MAX));
        assert_string_equal(checksum_mode_to_string(CHECKSUM_REQUIRED), "required");
        assert_string_equal(checksum_mode_to_string(CHECKSUM_OFF), "off");
        assert_null(checksum_mode_to_string(_CHECKSUM_MAX));
        assert_string_equal(restart_mode_to_string(RESTART_RESTART), "restart");
        assert_string_equal(restart_mode_to_string(RESTART_RELOAD), "reload");
        assert_string_equal(restart_mode_to_string(RESTART_TRY_RESTART), "try-restart");
        assert_string_equal(restart_mode_to_string(RESTART_NONE), "none");
        assert_null(restart_mode_to_string(_RESTART_MAX));
        assert_int_equal(restart_mode_from_string("try-restart"), RESTART_TRY_RESTART);
        assert_int_equal(credentials_source_from_string("imds"), CREDENTIALS_IMDS);
        assert_int_equal(select_mode_from_string("Newest"), -EINVAL);
        assert_int_equal(checksum_mode_from_string(NULL), -EINVAL);
        assert_int_equal(s3_addressing_from_string("path"), S3_ADDRESSING_PATH);
}

static const char full_config[] =
        "[agent]\n"
        "state_dir = /var/lib/da/\n"
        "socket = /run/da.sock\n"
        "socket_mode = 0600\n"
        "admin_group = wheel\n"
        "poll_interval = 5m\n"
        "poll_jitter = 50%\n"
        "max_workers = 8\n"
        "worker_user = nobody\n"
        "log_level = debug\n"
        "[s3]\n"
        "region = eu-west-1\n"
        "endpoint = http://127.0.0.1:4568/\n"
        "addressing = virtual\n"
        "credentials = static\n"
        "access_key_id = AKIAEXAMPLE\n"
        "secret_access_key = s3cr3t/key\n"
        "session_token = tok\n"
        "[service \"web-1.x\"]\n"
        "bucket = my.bucket-1\n"
        "prefix = web/\n"
        "suffix = .tar.zst\n"
        "select = pointer\n"
        "pointer_key = web/LATEST\n"
        "min_age = 90s\n"
        "checksum = off\n"
        "public_key = RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\n"
        "root = /srv/web\n"
        "owner = www:www-data\n"
        "unit = web@1.service\n"
        "restart_mode = try-restart\n"
        "health_url = https://localhost:8443/health#x\n"
        "health_command = /usr/bin/test -e /run/web.ok\n"
        "health_settle = 500ms\n"
        "health_timeout = 2m\n"
        "auto_rollback = no\n"
        "keep_releases = 2\n"
        "pre_activate = ./migrate --check\n"
        "post_activate = logger deployed\n"
        "step_timeout = 1h\n"
        "max_artifact_size = 512M\n"
        "max_unpacked_size = 1T\n"
        "max_entries = 1000\n";

static void test_full(void **state) {
        _cleanup_config_ Config *c = load_ok(full_config);
        const ServiceConfig *s;

        assert_string_equal(c->agent.state_dir, "/var/lib/da");
        assert_string_equal(c->agent.socket, "/run/da.sock");
        assert_int_equal(c->agent.socket_mode, 0600);
        assert_string_equal(c->agent.admin_group, "wheel");
        assert_int_equal(c->agent.poll_interval_usec, 300 * USEC_PER_SEC);
        assert_int_equal(c->agent.poll_jitter_percent, 50);
        assert_int_equal(c->agent.max_workers, 8);
        assert_string_equal(c->agent.worker_user, "nobody");
        assert_int_equal(c->agent.log_level, LOG_DEBUG);
        assert_string_equal(c->s3.region, "eu-west-1");
        assert_string_equal(c->s3.endpoint, "http://127.0.0.1:4568");
        assert_int_equal(c->s3.addressing, S3_ADDRESSING_VIRTUAL);
        assert_int_equal(c->s3.credentials, CREDENTIALS_STATIC);
        assert_string_equal(c->s3.access_key_id, "AKIAEXAMPLE");
        assert_string_equal(c->s3.secret_access_key, "s3cr3t/key");
        assert_string_equal(c->s3.session_token, "tok");
        assert_int_equal(c->n_services, 1);
        s = config_find_service(c, "web-1.x");
        assert_non_null(s);
        assert_string_equal(s->name, "web-1.x");
        assert_string_equal(s->bucket, "my.bucket-1");
        assert_string_equal(s->prefix, "web/");
        assert_string_equal(s->suffix, ".tar.zst");
        assert_int_equal(s->select, SELECT_POINTER);
        assert_string_equal(s->pointer_key, "web/LATEST");
        assert_int_equal(s->min_age_usec, 90 * USEC_PER_SEC);
        assert_int_equal(s->checksum, CHECKSUM_OFF);
        assert_string_equal(s->public_key, "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3");
        assert_string_equal(s->root, "/srv/web");
        assert_string_equal(s->owner, "www:www-data");
        assert_string_equal(s->unit, "web@1.service");
        assert_int_equal(s->restart_mode, RESTART_TRY_RESTART);
        assert_string_equal(s->health_url, "https://localhost:8443/health#x");
        assert_string_equal(s->health_command, "/usr/bin/test -e /run/web.ok");
        assert_int_equal(s->health_settle_usec, 500 * USEC_PER_MSEC);
        assert_int_equal(s->health_timeout_usec, 120 * USEC_PER_SEC);
        assert_false(s->auto_rollback);
        assert_int_equal(s->keep_releases, 2);
        assert_string_equal(s->pre_activate, "./migrate --check");
        assert_string_equal(s->post_activate, "logger deployed");
        assert_int_equal(s->step_timeout_usec, 3600 * USEC_PER_SEC);
        assert_int_equal(s->max_artifact_size, UINT64_C(512) << 20);
        assert_int_equal(s->max_unpacked_size, UINT64_C(1) << 40);
        assert_int_equal(s->max_entries, 1000);
        assert_null(config_find_service(c, "web"));
        assert_null(config_find_service(NULL, "web"));
        assert_null(config_free(NULL));
}

static void test_defaults(void **state) {
        _cleanup_config_ Config *c = load_ok(MINIMAL_SERVICE);
        const ServiceConfig *s = &c->services[0];

        assert_string_equal(c->path, tmp_path);
        assert_string_equal(c->agent.state_dir, "/var/lib/deploy-agent");
        assert_string_equal(c->agent.socket, "/run/deploy-agent/control.sock");
        assert_int_equal(c->agent.socket_mode, 0660);
        assert_string_equal(c->agent.admin_group, "deploy");
        assert_int_equal(c->agent.poll_interval_usec, 60 * USEC_PER_SEC);
        assert_int_equal(c->agent.poll_jitter_percent, 20);
        assert_int_equal(c->agent.max_workers, 4);
        assert_string_equal(c->agent.worker_user, "deploy-agent");
        assert_int_equal(c->agent.log_level, LOG_INFO);
        assert_string_equal(c->s3.region, "us-east-1");
        assert_null(c->s3.endpoint);
        assert_int_equal(c->s3.addressing, S3_ADDRESSING_VIRTUAL);
        assert_int_equal(c->s3.credentials, CREDENTIALS_AUTO);
        assert_null(c->s3.access_key_id);
        assert_null(c->s3.secret_access_key);
        assert_null(c->s3.session_token);
        assert_string_equal(s->name, "api");
        assert_string_equal(s->prefix, "");
        assert_string_equal(s->suffix, ".tar.gz");
        assert_int_equal(s->select, SELECT_NEWEST);
        assert_null(s->pointer_key);
        assert_int_equal(s->min_age_usec, 0);
        assert_int_equal(s->checksum, CHECKSUM_REQUIRED);
        assert_null(s->public_key);
        assert_null(s->owner);
        assert_int_equal(s->restart_mode, RESTART_RESTART);
        assert_null(s->health_url);
        assert_null(s->health_command);
        assert_int_equal(s->health_settle_usec, 5 * USEC_PER_SEC);
        assert_int_equal(s->health_timeout_usec, 60 * USEC_PER_SEC);
        assert_true(s->auto_rollback);
        assert_int_equal(s->keep_releases, 5);
        assert_null(s->pre_activate);
        assert_null(s->post_activate);
        assert_int_equal(s->step_timeout_usec, 600 * USEC_PER_SEC);
        assert_int_equal(s->max_artifact_size, UINT64_C(2) << 30);
        assert_int_equal(s->max_unpacked_size, UINT64_C(8) << 30);
        assert_int_equal(s->max_entries, 200000);
}

static void test_addressing_default(void **state) {
        Config *c;

        c = load_ok("[s3]\nendpoint = https://minio.local:9000\n" MINIMAL_SERVICE);
        assert_int_equal(c->s3.addressing, S3_ADDRESSING_PATH);
        config_free(c);
        c = load_ok("[s3]\nendpoint = https://minio.local:9000\naddressing = virtual\n" MINIMAL_SERVICE);
        assert_int_equal(c->s3.addressing, S3_ADDRESSING_VIRTUAL);
        config_free(c);
        c = load_ok("[s3]\nendpoint =\naddressing = path\n" MINIMAL_SERVICE);
        assert_null(c->s3.endpoint);
        assert_int_equal(c->s3.addressing, S3_ADDRESSING_PATH);
        config_free(c);
}

static void test_comments(void **state) {
        _cleanup_config_ Config *c = load_ok(
                "\xEF\xBB\xBF# leading comment\n"
                "; another\n"
                "[agent]   ; the agent\n"
                "  poll_interval = 30s   ; indented, inline comment\n"
                "\tmax_workers = 2 # hash comment\n"
                "worker_user=deploy-agent\n"
                "\n"
                "[s3] # s3\n"
                "endpoint =                 ; unset\n"
                "[ service   \"api\" ]\n"
                "bucket = acme ; comment\n"
                "root = /srv/api\n"
                "unit = api.service\n"
                "health_command = test -e /x;true\n"
                "    ; indented comment, not a continuation\n"
                "health_url = http://h/p#frag\n"
                "pre_activate =\n");
        const ServiceConfig *s = config_find_service(c, "api");

        assert_int_equal(c->agent.poll_interval_usec, 30 * USEC_PER_SEC);
        assert_int_equal(c->agent.max_workers, 2);
        assert_null(c->s3.endpoint);
        assert_non_null(s);
        assert_string_equal(s->bucket, "acme");
        assert_string_equal(s->health_command, "test -e /x;true");
        assert_string_equal(s->health_url, "http://h/p#frag");
        assert_null(s->pre_activate);
        assert_int_equal(c->n_services, 1);
}

static void test_worker_user_semicolon(void **state) {
        load_fails("[agent]\nworker_user=deploy-agent;x\n" MINIMAL_SERVICE, 2,
                   "[agent] worker_user: must be a user or group name, got \"deploy-agent;x\"", NULL);
}

static void test_error_key_problems(void **state) {
        load_fails("[agent]\n\n[service \"api\"]\nbucket = acme-artifacts\nroot = srv/api\n", 5,
                   "[service \"api\"] root: must be an absolute path, got \"srv/api\"", NULL);
        load_fails("[agent]\nstate_dir = /var/../etc\n" MINIMAL_SERVICE, 2, "[agent] state_dir: ", "\"..\"", NULL);
        load_fails("[agent]\npoll_interval = 500ms\n" MINIMAL_SERVICE, 2,
                   "[agent] poll_interval: must be at least 1s, got \"500ms\"", NULL);
        load_fails("[agent]\npoll_interval = soon\n" MINIMAL_SERVICE, 2, "[agent] poll_interval: ", "\"soon\"", NULL);
        load_fails("[agent]\npoll_interval = 99999999999999d\n" MINIMAL_SERVICE, 2, "poll_interval: duration too large", NULL);
        load_fails("[agent]\npoll_jitter = 120%\n" MINIMAL_SERVICE, 2, "[agent] poll_jitter: ", NULL);
        load_fails("[agent]\nmax_workers = 65\n" MINIMAL_SERVICE, 2,
                   "[agent] max_workers: must be between 1 and 64, got \"65\"", NULL);
        load_fails("[agent]\nmax_workers = 0\n" MINIMAL_SERVICE, 2, "[agent] max_workers: ", NULL);
        load_fails("[agent]\nsocket_mode = 01777\n" MINIMAL_SERVICE, 2, "[agent] socket_mode: ", "0777", NULL);
        load_fails("[agent]\nsocket_mode = rw\n" MINIMAL_SERVICE, 2, "[agent] socket_mode: ", NULL);
        load_fails("[agent]\nlog_level = verbose\n" MINIMAL_SERVICE, 2, "[agent] log_level: ", "\"verbose\"", NULL);
        load_fails("[agent]\nworker_user =\n" MINIMAL_SERVICE, 2, "[agent] worker_user: must not be empty", NULL);
        load_fails("[agent]\nsocket = /run/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                   "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.sock\n" MINIMAL_SERVICE, 2, "[agent] socket: ", NULL);
        load_fails("[s3]\nregion =\n" MINIMAL_SERVICE, 2, "[s3] region: must not be empty", NULL);
        load_fails("[s3]\nendpoint = minio:9000\n" MINIMAL_SERVICE, 2,
                   "[s3] endpoint: must be an http:// or https:// URL, got \"minio:9000\"", NULL);
        load_fails("[s3]\naddressing = host\n" MINIMAL_SERVICE, 2,
                   "[s3] addressing: must be one of virtual | path, got \"host\"", NULL);
        load_fails("[s3]\ncredentials = vault\n" MINIMAL_SERVICE, 2,
                   "[s3] credentials: must be one of auto | env | imds | static", NULL);
}

static void test_error_service_problems(void **state) {
        load_fails(MINIMAL_SERVICE "keep_releases = 1\n", 5, "[service \"api\"] keep_releases: ", NULL);
        load_fails(MINIMAL_SERVICE "bucket = x\n", 5, "[service \"api\"] bucket: duplicate key, first set on line 2", NULL);
        load_fails("[service \"api\"]\nbucket = Acme_Artifacts\n", 2, "[service \"api\"] bucket: ", "\"Acme_Artifacts\"", NULL);
        load_fails("[service \"api\"]\nbucket = ab\n", 2, "[service \"api\"] bucket: ", NULL);
        load_fails("[service \"api\"]\nbucket = 192.168.1.1\n", 2, "[service \"api\"] bucket: ", NULL);
        load_fails(MINIMAL_SERVICE "suffix = .rar\n", 5, "[service \"api\"] suffix: ", "\".rar\"", NULL);
        load_fails(MINIMAL_SERVICE "prefix = /api/\n", 5, "[service \"api\"] prefix: must not start with '/'", NULL);
        load_fails(MINIMAL_SERVICE "select = latest\n", 5, "[service \"api\"] select: must be one of newest | pointer", NULL);
        load_fails(MINIMAL_SERVICE "checksum = maybe\n", 5, "[service \"api\"] checksum: ", NULL);
        load_fails(MINIMAL_SERVICE "restart_mode = kill\n", 5, "[service \"api\"] restart_mode: ", "try-restart", NULL);
        load_fails(MINIMAL_SERVICE "auto_rollback = maybe\n", 5, "[service \"api\"] auto_rollback: must be yes or no", NULL);
        load_fails(MINIMAL_SERVICE "public_key = abc\n", 5, "[service \"api\"] public_key: ", NULL);
        load_fails(MINIMAL_SERVICE "health_url = localhost:8080\n", 5, "[service \"api\"] health_url: ", NULL);
        load_fails(MINIMAL_SERVICE "owner = :grp\n", 5, "[service \"api\"] owner: ", NULL);
        load_fails(MINIMAL_SERVICE "max_artifact_size = 0\n", 5, "[service \"api\"] max_artifact_size: must be at least 1", NULL);
        load_fails(MINIMAL_SERVICE "max_unpacked_size = 2X\n", 5, "[service \"api\"] max_unpacked_size: ", NULL);
        load_fails(MINIMAL_SERVICE "max_entries = 0\n", 5, "[service \"api\"] max_entries: ", NULL);
        load_fails(MINIMAL_SERVICE "step_timeout = 0s\n", 5, "[service \"api\"] step_timeout: must be at least 1s", NULL);
        load_fails(MINIMAL_SERVICE "unit = api\n", 5, "[service \"api\"] unit: ", NULL);
        load_fails(MINIMAL_SERVICE "health_settle = 2m\n", 5,
                   "[service \"api\"] health_settle: must not be longer than health_timeout", NULL);
        load_fails("[agent]\nhost_id = _abort\n" MINIMAL_SERVICE, 2, "[agent] host_id: must be 1..64 characters", NULL);
        load_fails("[agent]\nhost_id = a/b\n" MINIMAL_SERVICE, 2, "[agent] host_id: ", NULL);
        load_fails(MINIMAL_SERVICE "canary = maybe\n", 5, "[service \"api\"] canary: must be yes or no", NULL);
        load_fails(MINIMAL_SERVICE "status_interval = 0s\n", 5, "[service \"api\"] status_interval: must be at least 1s",
                   NULL);
        /* newest mode lists prefix at every poll: fleet objects must live elsewhere */
        load_fails(MINIMAL_SERVICE "fleet_prefix = fleet/\n", 5,
                   "[service \"api\"] fleet_prefix: must not lie under prefix", NULL);
        load_fails(MINIMAL_SERVICE "prefix = api/\nfleet_prefix = api/fleet/\n", 6,
                   "[service \"api\"] fleet_prefix: must not lie under prefix (\"api/\")", NULL);
}

static void test_fleet_keys(void **state) {
        _cleanup_config_ Config *c = load_ok("[agent]\nhost_id = i-0abc.de_f-1\n" MINIMAL_SERVICE
                                             "prefix = api/builds/\nfleet_prefix = api/fleet/\ncanary = yes\n"
                                             "status_interval = 5m\n");
        _cleanup_config_ Config *d = load_ok(MINIMAL_SERVICE "select = pointer\npointer_key = api/current\n"
                                             "fleet_prefix = api/fleet/\n");

        assert_string_equal(c->agent.host_id, "i-0abc.de_f-1");
        assert_string_equal(c->services[0].fleet_prefix, "api/fleet/");
        assert_true(c->services[0].canary);
        assert_int_equal(c->services[0].status_interval_usec, 300 * USEC_PER_SEC);
        /* pointer mode lists nothing under prefix: any fleet_prefix is fine */
        assert_string_equal(d->services[0].fleet_prefix, "api/fleet/");
        assert_null(d->agent.host_id);
        assert_false(d->services[0].canary);
        assert_int_equal(d->services[0].status_interval_usec, 3600 * USEC_PER_SEC);
}

static void test_error_missing(void **state) {
        /* Not on a line of its own: the section header's line. */
        load_fails("[agent]\n[service \"api\"]\nroot = /srv/api\n", 2, "[service \"api\"] bucket: required", NULL);
        load_fails("[service \"api\"]\n\n[service \"web\"]\nbucket = acme\n", 1, "[service \"api\"] bucket: required", NULL);
        load_fails("[service \"api\"]\nbucket = acme\n", 1, "[service \"api\"] root: required", NULL);
        load_fails("[service \"api\"]\nbucket = acme\nroot = /srv/api\nunit = a.service\nselect = pointer\n", 5,
                   "[service \"api\"] pointer_key: required when select = pointer", NULL);
        /* No service is valid: what a fresh package ships, and all a CI runner's
         * publish needs. */
        Config *empty = load_ok("[agent]\nlog_level = info\n");
        assert_int_equal(empty->n_services, 0);
        config_free(empty);
        empty = load_ok("");
        assert_int_equal(empty->n_services, 0);
        config_free(empty);

        /* unit stays unset unless given, whatever restart_mode says. */
        Config *c = load_ok("[service \"api\"]\nbucket = acme\nroot = /srv/api\n");
        assert_null(c->services[0].unit);
        assert_int_equal(c->services[0].restart_mode, RESTART_RESTART);
        config_free(c);
}

static void test_error_credentials(void **state) {
        load_fails("[s3]\ncredentials = static\naccess_key_id = AKIA\n" MINIMAL_SERVICE, 1,
                   "[s3] secret_access_key: required when credentials = static", NULL);
        load_fails("[s3]\ncredentials = static\nsecret_access_key = x\n" MINIMAL_SERVICE, 1,
                   "[s3] access_key_id: required when credentials = static", NULL);
        load_fails("[s3]\ncredentials = env\n\nsecret_access_key = x\n" MINIMAL_SERVICE, 4,
                   "[s3] secret_access_key: only used with credentials = static, but credentials = env", NULL);
        load_fails("[s3]\naccess_key_id = AKIA\n" MINIMAL_SERVICE, 2, "[s3] access_key_id: only used with", NULL);

        Config *c = load_ok("[s3]\ncredentials = static\naccess_key_id = AKIA\nsecret_access_key = x\n" MINIMAL_SERVICE);
        assert_null(c->s3.session_token);
        config_free(c);
}

static void test_error_structure(void **state) {
        load_fails(MINIMAL_SERVICE "colour = blue\n", 5, "[service \"api\"] colour: unknown key", NULL);
        load_fails("[agent]\nbucket = acme\n" MINIMAL_SERVICE, 2, "[agent] bucket: unknown key", NULL);
        load_fails("[agent]\n[database]\nhost = x\n" MINIMAL_SERVICE, 2, "[database]: unknown section", NULL);
        load_fails(MINIMAL_SERVICE "\n" MINIMAL_SERVICE, 6, "[service \"api\"]: duplicate service \"api\"", NULL);
        load_fails("[agent]\n[s3]\n[agent]\n" MINIMAL_SERVICE, 3, "[agent]: duplicate section, first on line 1", NULL);
        load_fails("[service api]\n", 1, "[service api]: a service section needs a quoted name", NULL);
        load_fails("[service]\n", 1, "[service]: ", NULL);
        load_fails("[service \"a/b\"]\n", 1, "[service \"a/b\"]: service name must be", NULL);
        load_fails("[service \"..\"]\n", 1, "service name must be", NULL);
        load_fails("[service \"\"]\n", 1, "service name must be", NULL);
        load_fails("[service \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"]\n", 1, "service name must be", NULL);
        load_fails("max_workers = 2\n" MINIMAL_SERVICE, 1, "max_workers: keys must follow a section header", NULL);
        load_fails("[agent\nmax_workers = 2\n", 1, "section header must end with ']'", NULL);
        load_fails("[agent]\nmax_workers 2\n", 2, "expected KEY = VALUE", NULL);
        load_fails("[agent]\n = 2\n", 2, NULL);
        load_fails(MINIMAL_SERVICE "\n[service \"web\"]\nbucket = acme\nroot = /srv/api/\nunit = w.service\n", 8,
                   "[service \"web\"] root: \"/srv/api\" is already the root of [service \"api\"]", NULL);
}

static void test_error_lines(void **state) {
        char text[512];

        memset(text, 0, sizeof(text));
        strcpy(text, "[agent]\nstate_dir = /");
        memset(text + strlen(text), 'a', 250);
        strcat(text, "\n");
        load_fails(text, 2, "line too long", NULL);
        load_fails("[agent]\nworker_user = a\x01" "b\n", 2, "control character", NULL);
}

static void test_open_error(void **state) {
        _cleanup_free_ char *err = NULL;
        Config *c = NULL;

        assert_int_equal(config_load("/nonexistent/deploy.ini", &c, &err), -ENOENT);
        assert_null(c);
        assert_string_equal(err, "/nonexistent/deploy.ini: cannot open: No such file or directory");
        assert_int_equal(config_load("/nonexistent/deploy.ini", &c, NULL), -ENOENT);
}

static void test_example(void **state) {
        _cleanup_free_ char *err = NULL;
        _cleanup_config_ Config *c = NULL;
        const ServiceConfig *s;
        int r;

        r = config_load("deploy.ini.example", &c, &err);
        if (r < 0)
                fail_msg("deploy.ini.example: %s", strempty(err));
        s = config_find_service(c, "api");
        assert_non_null(s);
        assert_string_equal(s->bucket, "acme-artifacts");
        assert_string_equal(s->prefix, "api/");
        assert_string_equal(s->root, "/srv/api");
        assert_string_equal(s->unit, "api.service");
        assert_string_equal(c->agent.worker_user, "deploy-agent");
        assert_null(c->s3.endpoint);
        assert_null(s->public_key);
}

/* config_print writes every key; loading its output gives the same output. */
static void test_print_roundtrip(void **state) {
        _cleanup_config_ Config *c = load_ok(full_config), *c2 = NULL;
        _cleanup_free_ char *out = NULL, *out2 = NULL, *err = NULL;
        size_t n;
        FILE *f;

        f = open_memstream(&out, &n);
        assert_int_equal(config_print(c, f), 0);
        fclose(f);
        assert_non_null(strstr(out, "[agent]\nstate_dir = /var/lib/da\n"));
        assert_non_null(strstr(out, "poll_interval = 5m\n"));
        assert_non_null(strstr(out, "socket_mode = 0600\n"));
        assert_non_null(strstr(out, "poll_jitter = 50%\n"));
        assert_non_null(strstr(out, "secret_access_key = (set)\n"));
        assert_non_null(strstr(out, "session_token = (set)\n"));
        assert_null(strstr(out, "s3cr3t"));
        assert_null(strstr(out, "AKIAEXAMPLE"));
        assert_non_null(strstr(out, "[service \"web-1.x\"]\n"));
        assert_non_null(strstr(out, "health_settle = 500ms\n"));
        assert_non_null(strstr(out, "max_unpacked_size = 1T\n"));
        assert_non_null(strstr(out, "auto_rollback = no\n"));
        assert_non_null(strstr(out, "owner = www:www-data\n"));

        assert_int_equal(config_load(write_tmp(out), &c2, &err), 0);
        unlink(tmp_path);
        f = open_memstream(&out2, &n);
        assert_int_equal(config_print(c2, f), 0);
        fclose(f);
        /* Only the first line, which names the file, differs. */
        assert_string_equal(strchr(out, '\n'), strchr(out2, '\n'));
}

static void test_print_defaults(void **state) {
        _cleanup_config_ Config *c = load_ok(MINIMAL_SERVICE);
        _cleanup_free_ char *out = NULL;
        size_t n;
        FILE *f = open_memstream(&out, &n);

        assert_int_equal(config_print(c, f), 0);
        fclose(f);
        assert_non_null(strstr(out, "poll_interval = 60s\n"));
        assert_non_null(strstr(out, "endpoint =\n"));
        assert_non_null(strstr(out, "secret_access_key =\n"));
        assert_non_null(strstr(out, "addressing = virtual\n"));
        assert_non_null(strstr(out, "credentials = auto\n"));
        assert_non_null(strstr(out, "log_level = info\n"));
        assert_non_null(strstr(out, "max_artifact_size = 2G\n"));
        assert_non_null(strstr(out, "step_timeout = 10m\n"));
        assert_non_null(strstr(out, "max_entries = 200000\n"));
        assert_non_null(strstr(out, "prefix =\n"));
}


#define SVC(name, root) "[service \"" name "\"]\nbucket = acme-artifacts\nroot = " root "\n"

/* Paths are compared and kept as they are meant: "//", "/./" and a
 * trailing "/" collapse, ".." is refused, "/." is the root directory. */
static void test_paths_normalized(void **state) {
        _cleanup_config_ Config *c = load_ok("[agent]\nstate_dir = //var//lib/./da/.\nsocket = /run/./da.sock\n"
                                             SVC("api", "/srv/./api//") SVC("web", "//srv/web/."));

        assert_string_equal(c->agent.state_dir, "/var/lib/da");
        assert_string_equal(c->agent.socket, "/run/da.sock");
        assert_string_equal(c->services[0].root, "/srv/api");
        assert_string_equal(c->services[1].root, "/srv/web");
        load_fails(SVC("api", "/."), 3, "[service \"api\"] root: must not be the root directory", NULL);
        load_fails(SVC("api", "//./"), 3, "root: must not be the root directory", NULL);
        load_fails(SVC("api", "/srv/api/../../etc"), 3, "root: must not contain \"..\"", NULL);
        load_fails(SVC("api", "/srv//./api/../x"), 3, "root: must not contain \"..\", got \"/srv//./api/../x\"", NULL);
        load_fails(SVC("api", "/srv/api/.."), 3, "root: must not contain \"..\"", NULL);
        config_free(load_ok(SVC("api", "/srv/..api/x..") SVC("web", "/srv/.web")));
        load_fails(SVC("api", "srv/api"), 3, "root: must be an absolute path", NULL);
}

static void test_system_dirs(void **state) {
        static const char *const refused[] = {
                "/etc", "/etc/", "/usr", "/usr/./", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/boot", "/run", "/var", "/var/lib", "/usr/lib", "/usr/local", "/home",
                "/tmp", "/srv", "/opt", "/root", "/var/log",
        };
        static const char *const kernel[] = {
                "/proc", "/sys", "/dev", "/proc/self/cwd", "/sys/fs/x", "/dev/shm/app", "/proc/1/root/srv",
        };
        char text[256];

        for (size_t i = 0; i < ELEMENTSOF(refused); i++) {
                snprintf(text, sizeof(text), SVC("api", "%s"), refused[i]);
                load_fails(text, 3, "[service \"api\"] root: must be a directory of its own, not the system directory", NULL);
                snprintf(text, sizeof(text), "[agent]\nstate_dir = %s\n" SVC("api", "/srv/api"), refused[i]);
                load_fails(text, 2, "[agent] state_dir: must be a directory of its own", NULL);
        }
        for (size_t i = 0; i < ELEMENTSOF(kernel); i++) {
                snprintf(text, sizeof(text), SVC("api", "%s"), kernel[i]);
                load_fails(text, 3, "[service \"api\"] root: must not be in ", "a kernel file system", NULL);
        }
        config_free(load_ok(SVC("api", "/srv/api") SVC("lib", "/srv/lib") SVC("usr", "/usr/local/app")));
}

static void test_root_symlink(void **state) {
        char base[] = "/tmp/test-config-links-XXXXXX", text[512], cmd[512];

        assert_non_null(mkdtemp(base));
        snprintf(cmd, sizeof(cmd), "mkdir -p %s/real/app && ln -s /etc %s/etc && ln -s real %s/link", base, base, base);
        assert_int_equal(system(cmd), 0);
        snprintf(text, sizeof(text), SVC("api", "%s/etc"), base);
        load_fails(text, 3, "[service \"api\"] root: must not go through a symlink", "(to \"/etc\")", NULL);
        snprintf(text, sizeof(text), SVC("api", "%s/link/app"), base);
        load_fails(text, 3, "root: must not go through a symlink", "/link\" is one (to \"real\")", NULL);
        snprintf(text, sizeof(text), SVC("api", "%s/link/not/yet"), base);
        load_fails(text, 3, "root: must not go through a symlink", NULL);
        /* a real directory, and one that does not exist yet below it */
        snprintf(text, sizeof(text), SVC("api", "%s/real/app") SVC("web", "%s/real/web/not/yet"), base, base);
        config_free(load_ok(text));
        snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
        assert_int_equal(system(cmd), 0);
}

static void test_roots_overlap(void **state) {
        load_fails(SVC("api", "/srv/./api") SVC("web", "/srv/api"), 6,
                   "[service \"web\"] root: \"/srv/api\" is already the root of [service \"api\"]", NULL);
        load_fails(SVC("api", "/srv/api") SVC("web", "/srv/api/releases/web"), 6,
                   "[service \"web\"] root: \"/srv/api/releases/web\" is inside the root of [service \"api\"] "
                   "(\"/srv/api\")", NULL);
        load_fails(SVC("api", "/srv/api/current/x") SVC("web", "/srv/api/"), 6,
                   "[service \"web\"] root: \"/srv/api\" contains the root of [service \"api\"]", NULL);
        load_fails("[agent]\nstate_dir = /srv/api/state\n" SVC("api", "/srv/api"), 5,
                   "[service \"api\"] root: \"/srv/api\" contains state_dir \"/srv/api/state\"", NULL);
        /* [agent] may come last: the check waits for the whole file */
        load_fails(SVC("api", "/var/lib/da/api") "[agent]\nstate_dir = /var/lib/da\n", 3,
                   "[service \"api\"] root: \"/var/lib/da/api\" is inside state_dir \"/var/lib/da\"", NULL);
        load_fails("[agent]\nstate_dir = /srv/api\n" SVC("api", "/srv/api/."), 5,
                   "root: \"/srv/api\" is also state_dir", NULL);
        config_free(load_ok(SVC("api", "/srv/api") SVC("api2", "/srv/api2") SVC("web", "/srv/apiweb")));
}

static void test_public_key_decoded(void **state) {
        _cleanup_config_ Config *c = load_ok(MINIMAL_SERVICE
                "public_key = RWQAAQIDBAUGB2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKD, "
                "RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\n");
        static const char *const bad[] = {
                "RWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",    /* 56 chars, not "Ed" */
                "RWUAAQIDBAUGB2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKD",    /* "Ee" */
                "RWQAAQIDBAUGB2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYK=",    /* 41 bytes */
                "RWQAAQIDBAUGB2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKD RW", /* a second, cut */
        };
        char text[256];

        assert_non_null(c->services[0].public_key);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                snprintf(text, sizeof(text), MINIMAL_SERVICE "public_key = %s\n", bad[i]);
                load_fails(text, 5, "[service \"api\"] public_key: must be one or more", NULL);
        }
}

static void test_not_root(void **state) {
        load_fails("[agent]\nworker_user = root\n" MINIMAL_SERVICE, 2,
                   "[agent] worker_user: must not be root (uid 0), got \"root\"", NULL);
        load_fails("[agent]\nworker_user = 0\n" MINIMAL_SERVICE, 2, "[agent] worker_user: must not be root", NULL);
        load_fails(MINIMAL_SERVICE "owner = root\n", 5, "[service \"api\"] owner: must not be root (uid 0)", NULL);
        load_fails(MINIMAL_SERVICE "owner = root:www-data\n", 5, "owner: must not be root", NULL);
        load_fails(MINIMAL_SERVICE "owner = 0:www-data\n", 5, "owner: must not be root", NULL);
        config_free(load_ok(MINIMAL_SERVICE "owner = www-data:root\n"));
        config_free(load_ok("[agent]\nworker_user = nobody\n" MINIMAL_SERVICE "owner = 1000\n"));
}

static void test_too_large(void **state) {
        Config *c;

        load_fails(MINIMAL_SERVICE "step_timeout = 366d\n", 5, "[service \"api\"] step_timeout: must be at most 365d", NULL);
        load_fails(MINIMAL_SERVICE "step_timeout = 18446744073709551us\n", 5, "step_timeout: must be at most", NULL);
        load_fails("[agent]\npoll_interval = 9999999h\n" MINIMAL_SERVICE, 2, "poll_interval: must be at most", NULL);
        load_fails(MINIMAL_SERVICE "min_age = 400d\n", 5, "min_age: must be at most", NULL);
        load_fails(MINIMAL_SERVICE "health_timeout = 9223372036854s\n", 5, "health_timeout: must be at most", NULL);
        load_fails(MINIMAL_SERVICE "max_unpacked_size = 1025T\n", 5, "max_unpacked_size: must be at most 1024T", NULL);
        load_fails(MINIMAL_SERVICE "max_artifact_size = 9223372036854775808\n", 5, "max_artifact_size: must be at most", NULL);
        load_fails(MINIMAL_SERVICE "max_entries = 9223372036854775808\n", 5, "max_entries: must be between 1 and", NULL);
        c = load_ok(MINIMAL_SERVICE "step_timeout = 365d\nmax_unpacked_size = 1024T\nmax_entries = 9223372036854775807\n");
        assert_int_equal(c->services[0].step_timeout_usec, UINT64_C(365) * 86400 * USEC_PER_SEC);
        config_free(c);
}

static void test_not_utf8(void **state) {
        load_fails(MINIMAL_SERVICE "prefix = api\xff/\n", 5, "line is not valid UTF-8", NULL);
        load_fails("[service \"api\"]\nbucket = acme\nroot = /srv/\xc3\x28\n", 3, "not valid UTF-8", NULL);
        load_fails(MINIMAL_SERVICE "health_command = echo \xed\xa0\x80\n", 5, "not valid UTF-8", NULL);  /* surrogate */
        load_fails(MINIMAL_SERVICE "pre_activate = \xc0\xaf\n", 5, "not valid UTF-8", NULL);            /* overlong */
        load_fails("[agent\xfe]\n" MINIMAL_SERVICE, 1, "not valid UTF-8", NULL);
        config_free(load_ok(MINIMAL_SERVICE "prefix = caf\xc3\xa9/\xf0\x9f\x9a\x80/\n# comment \xff\n"));
}

/* check-config shows every problem at once, sorted by line, each in the
 * "FILE:LINE: [section] key: problem" form. */
static void test_every_error(void **state) {
        static const char text[] =
                "[service \"web\"]\n"                     /* 1: bucket required */
                "root = /srv/api\n"                       /* 2: same root as api, reported on 11 */
                "owner = root\n"                          /* 3 */
                "[agent]\n"
                "worker_user = root\n"                    /* 5 */
                "max_workers = 0\n"                       /* 6 */
                "colour = blue\n"                         /* 7 */
                "[service \"api\"]\n"
                "bucket = acme-artifacts\n"
                "step_timeout = 999d\n"                   /* 10 */
                "root = /srv/./api/\n"                    /* 11 */
                "public_key = RWAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"  /* 12 */
                "prefix = a\xff\n"                        /* 13 */
                "nonsense\n"                              /* 14 */
                "[database]\n"                            /* 15 */
                "host = x\n";                             /* ignored: its section was refused */
        static const char *const expect[] = {
                ":1: [service \"web\"] bucket: required",
                ":3: [service \"web\"] owner: must not be root",
                ":5: [agent] worker_user: must not be root",
                ":6: [agent] max_workers: must be between 1 and 64",
                ":7: [agent] colour: unknown key",
                ":10: [service \"api\"] step_timeout: must be at most 365d",
                ":11: [service \"api\"] root: \"/srv/api\" is already the root of [service \"web\"]",
                ":12: [service \"api\"] public_key: must be one or more",
                ":13: line is not valid UTF-8",
                ":14: expected KEY = VALUE or [SECTION], got \"nonsense\"",
                ":15: [database]: unknown section",
        };
        _cleanup_free_ char *err = NULL;
        Config *c = NULL;
        const char *p;

        assert_int_equal(config_load(write_tmp(text), &c, &err), -EINVAL);
        unlink(tmp_path);
        assert_null(c);
        print_message("%s\n", err);
        p = err;
        for (size_t i = 0; i < ELEMENTSOF(expect); i++) {
                size_t n = strcspn(p, "\n");

                if (strncmp(p, tmp_path, strlen(tmp_path)) != 0 || !memmem(p, n, expect[i], strlen(expect[i])))
                        fail_msg("problem %zu is \"%.*s\", expected \"%s\"", i, (int) n, p, expect[i]);
                p += n + (p[n] == '\n');
        }
        assert_string_equal(p, "");
}

static char *print_config(const Config *c) {
        char *out = NULL;
        size_t n;
        FILE *f = open_memstream(&out, &n);

        assert_non_null(f);
        assert_int_equal(config_print(c, f), 0);
        fclose(f);
        return out;
}

/* check-config -v prints what loads back the same: values that start with a
 * comment character or a quote, blanks at either end, backslashes, a key
 * and value at the length limit. Each value is loaded, printed, reloaded
 * and printed again; both loads give the value, both prints are equal. */
static void test_print_reload_tricky(void **state) {
        static const char *const values[] = {
                "#not a comment", ";nor this", "  leading blanks", "trailing blanks  ", "\tboth\t",
                "a ; b", "a # b", "a;b#c", "\"quoted\"", "\"", "\"\"", "x\"y", "back\\slash", "\\",
                "ends with \\", "\\\"", "\"a\" \"b\"", "= starts with =", "[not a section]", " ",
                "caf\xc3\xa9 \xf0\x9f\x9a\x80", "#", ";",
        };
        char long_value[256];

        memset(long_value, 0, sizeof(long_value));
        memset(long_value, '#', 197 - strlen("health_command"));     /* exactly at the limit */
        for (size_t i = 0; i <= ELEMENTSOF(values); i++) {
                const char *v = i < ELEMENTSOF(values) ? values[i] : long_value;
                _cleanup_config_ Config *c = NULL, *c2 = NULL;
                _cleanup_free_ char *quoted = NULL, *text = NULL, *out = NULL, *out2 = NULL, *err = NULL;
                size_t n = strlen(v);

                /* written the way an operator would have to: quoted, \" and \\ escaped */
                quoted = calloc(1, 2 * n + 3);
                assert_non_null(quoted);
                quoted[0] = '"';
                for (size_t j = 0, k = 1; j < n; j++) {
                        if (v[j] == '"' || v[j] == '\\')
                                quoted[k++] = '\\';
                        quoted[k++] = v[j];
                }
                strcat(quoted, "\"");
                assert_true(asprintf(&text, MINIMAL_SERVICE "health_command = %s   ; a comment\n", quoted) > 0);
                c = load_ok(text);
                assert_string_equal(c->services[0].health_command, v);
                out = print_config(c);
                if (config_load(write_tmp(out), &c2, &err) < 0)
                        fail_msg("value \"%s\" printed as\n%s\ndoes not load: %s", v, out, strempty(err));
                unlink(tmp_path);
                assert_string_equal(c2->services[0].health_command, v);
                out2 = print_config(c2);
                assert_string_equal(strchr(out, '\n'), strchr(out2, '\n'));
        }
}

/* Values as they were written before quoting existed keep their meaning. */
static void test_unquoted_values_unchanged(void **state) {
        _cleanup_config_ Config *c = load_ok(MINIMAL_SERVICE
                "health_command = \"/bin/check\" --fast ; comment\n"
                "pre_activate = \"unterminated\n"
                "post_activate = \"bad \\escape\"\n"
                "prefix = \"api/\"\n");
        const ServiceConfig *s = &c->services[0];
        _cleanup_free_ char *out = print_config(c);

        assert_string_equal(s->health_command, "\"/bin/check\" --fast");
        assert_string_equal(s->pre_activate, "\"unterminated");
        assert_string_equal(s->post_activate, "\"bad \\escape\"");
        assert_string_equal(s->prefix, "api/");
        assert_non_null(strstr(out, "\nhealth_command = \"\\\"/bin/check\\\" --fast\"\n"));
        assert_non_null(strstr(out, "\nprefix = api/\n"));
        assert_non_null(strstr(out, "\nunit = api.service\n"));
}

/* The limit counts key and value, not the blanks and quotes around them. */
static void test_line_limit(void **state) {
        char text[512], value[256];

        memset(value, 0, sizeof(value));
        memset(value, 'x', 197 - strlen("health_command") + 1);
        snprintf(text, sizeof(text), MINIMAL_SERVICE "health_command = %s\n", value);
        load_fails(text, 5, "line too long", NULL);
        value[strlen(value) - 1] = '\0';
        snprintf(text, sizeof(text), MINIMAL_SERVICE "health_command    =     \"%s\"    # comment\n", value);
        config_free(load_ok(text));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_duration),
                cmocka_unit_test(test_parse_size),
                cmocka_unit_test(test_parse_small),
                cmocka_unit_test(test_format),
                cmocka_unit_test(test_enums),
                cmocka_unit_test(test_full),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_addressing_default),
                cmocka_unit_test(test_comments),
                cmocka_unit_test(test_worker_user_semicolon),
                cmocka_unit_test(test_error_key_problems),
                cmocka_unit_test(test_error_service_problems),
                cmocka_unit_test(test_error_missing),
                cmocka_unit_test(test_error_credentials),
                cmocka_unit_test(test_error_structure),
                cmocka_unit_test(test_error_lines),
                cmocka_unit_test(test_open_error),
                cmocka_unit_test(test_example),
                cmocka_unit_test(test_print_roundtrip),
                cmocka_unit_test(test_print_defaults),
                cmocka_unit_test(test_paths_normalized),
                cmocka_unit_test(test_system_dirs),
                cmocka_unit_test(test_root_symlink),
                cmocka_unit_test(test_roots_overlap),
                cmocka_unit_test(test_public_key_decoded),
                cmocka_unit_test(test_not_root),
                cmocka_unit_test(test_too_large),
                cmocka_unit_test(test_not_utf8),
                cmocka_unit_test(test_every_error),
                cmocka_unit_test(test_print_reload_tricky),
                cmocka_unit_test(test_unquoted_values_unchanged),
                cmocka_unit_test(test_line_limit),
                cmocka_unit_test(test_fleet_keys),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
