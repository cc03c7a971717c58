/* ctl-print.c: how deployctl shows answers. */
#define _GNU_SOURCE
#include "ctl/ctl-print.h"

#include "common/util.h"

static bool progress_shown;

/* Display only: a field the agent left out prints as absent, never fails
 * the command (what deployctl acts on is the "ok" and "error" it checks). */
static const char *field_string(const json_t *obj, const char *key) {
        return json_string_value(json_object_get(obj, key));
}

static uint64_t field_uint64(const json_t *obj, const char *key) {
        json_t *v = json_object_get(obj, key);

        return json_is_integer(v) && json_integer_value(v) >= 0 ? (uint64_t) json_integer_value(v) : 0;
}

static bool field_true(const json_t *obj, const char *key) {
        return json_is_true(json_object_get(obj, key));
}

int ctl_exit_code(json_t *res) {
        static const struct { const char *code; int exit; } map[] = {
                { "unknown_service", CTL_EXIT_UNKNOWN }, { "not_deployed", CTL_EXIT_UNKNOWN },
                { "permission_denied", CTL_EXIT_DENIED }, { "bad_request", CTL_EXIT_USAGE },
                { "unknown_command", CTL_EXIT_USAGE }, { "too_large", CTL_EXIT_USAGE },
        };
        const char *code = field_string(json_object_get(res, "error"), "code");

        if (field_true(res, "ok"))
                return CTL_EXIT_OK;
        for (size_t i = 0; code && i < ELEMENTSOF(map); i++)
                if (streq(map[i].code, code))
                        return map[i].exit;
        return CTL_EXIT_FAILED;
}

void ctl_print_json(json_t *res) {
        if (!json_object_get(res, "changed"))
                json_object_set_new(res, "changed", json_false());
        json_dumpf(res, stdout, JSON_COMPACT | JSON_SORT_KEYS);
        fputc('\n', stdout);
}

void ctl_print_error(json_t *res) {
        const char *msg = field_string(json_object_get(res, "error"), "message");

        fprintf(stderr, "deployctl: %s\n", msg ?: "the agent refused without a reason");
}

void ctl_print_progress(json_t *ev) {
        const char *service = field_string(ev, "service"), *step = field_string(ev, "step");
        uint64_t bytes = field_uint64(ev, "bytes"), total = field_uint64(ev, "total");

        if (!ev) {
                if (progress_shown)
                        fputs("\r\033[K", stderr);
                progress_shown = false;
                return;
        }
        if (total > 0)
                fprintf(stderr, "\r\033[K%s: %s %llu%% (%.1f of %.1f MiB)", strempty(service), strempty(step),
                        (unsigned long long) (bytes * 100 / total), bytes / 1048576.0, total / 1048576.0);
        else
                fprintf(stderr, "\r\033[K%s: %s", strempty(service), strempty(step));
        progress_shown = true;
}

static const char *short_sha(const char *sha, char buf[static 13]) {
        snprintf(buf, 13, "%.12s", sha ? sha : "nothing");
        return buf;
}

void ctl_print_change(json_t *res) {
        const char *service = strempty(field_string(res, "service"));
        char a[13], b[13];

        if (json_object_get(res, "paused"))
                printf("%s: %s%s\n", service, field_true(res, "changed") ? "" : "already ",
                       field_true(res, "paused") ? "paused" : "resumed");
        else if (field_true(res, "accepted"))
                printf("%s: accepted; follow it with 'deployctl status %s'\n", service, service);
        else if (field_true(res, "changed"))
                printf("%s: now at %s (was %s)\n", service, short_sha(field_string(res, "sha"), a),
                       short_sha(field_string(res, "previous"), b));
        else
                printf("%s: unchanged, at %s\n", service, short_sha(field_string(res, "sha"), a));
}

void ctl_print_version(json_t *res) {
        printf("%s\n", strempty(field_string(res, "sha")));
}

/* ", healthy since T" after the current line; the time only when it is not
 * the deploy time printed before it (after a rollback, it is later). */
static void print_health(json_t *s) {
        const char *health = field_string(s, "health"), *since = field_string(s, "running_since");

        if (!health)
                return;
        printf(", %s", streq(health, "checking") ? "being checked" : health);
        if (since && !streq_ptr(since, field_string(s, "since")))
                printf(" since %s", since);
}

/* What failed since the release that runs was deployed: the build that was
 * rolled back, left active, or rejected, and whether it comes back. */
static void print_failure(json_t *s) {
        json_t *f = json_object_get(s, "last_failure");
        const char *outcome = field_string(f, "outcome"), *when = field_string(f, "when") ?: "-";
        const char *to = field_string(f, "rolled_back_to");
        char a[13], b[13];

        if (!outcome)
                return;
        printf("  failed   %s  ", short_sha(field_string(f, "sha"), a));
        if (streq(outcome, "rolled-back"))
                printf("failed and was rolled back to %s at %s", short_sha(to, b), when);
        else if (streq(outcome, "rejected"))
                printf("was rejected at %s", when);
        else
                printf("failed at %s and stays active (nothing to roll back to)", when);
        if (field_string(f, "reason"))
                printf(": %s", field_string(f, "reason"));
        printf("%s\n", field_true(f, "bad") ? "; marked bad: will not be deployed again" : "");
}

/* What the agent does next: the running step, or the next poll and why it
 * waits that long. */
static void print_next(json_t *s) {
        const char *step = field_string(s, "step");
        uint64_t failures = field_uint64(s, "failures");

        if (step)
                printf("  next     %s is running\n", step);
        else if (field_true(s, "paused"))
                printf("  next     nothing: paused, no automatic deploy until resumed\n");
        else if (json_is_integer(json_object_get(s, "next_poll_in_sec"))) {
                printf("  next     poll in %llus", (unsigned long long) field_uint64(s, "next_poll_in_sec"));
                if (failures > 0)
                        printf(" (backing off: %llu failure%s in a row)", (unsigned long long) failures,
                               failures == 1 ? "" : "s");
                printf("%s\n", field_string(s, "pinned") ? "; pinned: deploys nothing new" : "");
        }
}

/* Shown only with the fleet: a host without it prints what it always did. */
static void print_fleet(json_t *s) {
        json_t *ro = json_object_get(s, "rollout");
        char a[13];

        if (field_string(s, "host_id"))
                printf("  host     %s%s%s\n", field_string(s, "host_id"), field_string(s, "zone") ? " in " : "",
                       strempty(field_string(s, "zone")));
        if (!json_is_object(ro))
                return;
        printf("  rollout  %s  %s, wave %llu", short_sha(field_string(ro, "sha"), a), strempty(field_string(ro, "status")),
               (unsigned long long) field_uint64(ro, "wave"));
        if (field_string(ro, "halted"))
                printf(": halted by %s", field_string(ro, "halted"));
        else if (field_string(ro, "message"))
                printf(": %s", field_string(ro, "message"));
        printf("\n");
}

static void print_service(json_t *s) {
        json_t *bad = json_object_get(s, "bad"), *b;
        const char *previous = field_string(s, "previous");
        char a[13], p[13];
        bool previous_bad = false;
        size_t i;

        json_array_foreach(bad, i, b)
                previous_bad |= previous && streq_ptr(field_string(b, "sha"), previous);
        printf("%s\n  current  %s  since %s", strempty(field_string(s, "name")), short_sha(field_string(s, "current"), a),
               field_string(s, "since") ?: "-");
        print_health(s);
        printf("\n  previous %s%s\n  state    %s%s%s\n", short_sha(previous, p), previous_bad ? "  (bad)" : "",
               strempty(field_string(s, "activity")), field_true(s, "paused") ? ", paused" : "",
               field_string(s, "pinned") ? ", pinned" : "");
        print_failure(s);
        print_next(s);
        printf("  polled   %s\n", field_string(s, "last_poll") ?: "never");
        if (field_string(s, "last_error"))
                printf("  error    %s\n", field_string(s, "last_error"));
        json_array_foreach(bad, i, b)
                printf("  bad      %s  %s\n", short_sha(field_string(b, "sha"), a), strempty(field_string(b, "reason")));
        print_fleet(s);
}

void ctl_print_status(json_t *res) {
        json_t *agent = json_object_get(res, "agent"), *services = json_object_get(res, "services"), *s;
        uint64_t up = field_uint64(agent, "uptime_sec");
        size_t i;

        printf("deploy-agent %s, pid %lld, up %llud %02lluh%02llum\n", strempty(field_string(agent, "version")),
               (long long) field_uint64(agent, "pid"), (unsigned long long) (up / 86400),
               (unsigned long long) (up / 3600 % 24), (unsigned long long) (up / 60 % 60));
        json_array_foreach(services, i, s)
                print_service(s);
}

void ctl_print_history(json_t *res) {
        json_t *h = json_object_get(res, "history"), *e;
        char a[13], p[13];
        size_t i;

        json_array_foreach(h, i, e)
                printf("%s  %-11s %s  (was %s)%s%s\n", strempty(field_string(e, "when")),
                       strempty(field_string(e, "outcome")), short_sha(field_string(e, "sha"), a),
                       short_sha(field_string(e, "previous"), p), field_string(e, "message") ? "  " : "",
                       strempty(field_string(e, "message")));
}
