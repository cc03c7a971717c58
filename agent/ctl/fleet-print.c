/* fleet-print.c: the fleet status report as text. Display only: a field
 * missing from the report prints as absent. */
#define _GNU_SOURCE
#include "ctl/fleet-print.h"

#include "common/util.h"

static const char *str(const json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

#define SHOWN_MAX 512

/* Every string here was written by some host: printable ASCII only on the
 * operator's terminal (no escape sequences), bounded. */
static const char *shown(const json_t *o, const char *key, char buf[static SHOWN_MAX]) {
        const char *s = str(o, key);

        return s ? printable_copy(buf, SHOWN_MAX, s) : NULL;
}

static json_int_t num(const json_t *o, const char *key) {
        return json_integer_value(json_object_get(o, key));
}

static double real(const json_t *o, const char *key) {
        return json_number_value(json_object_get(o, key));
}

static void print_pointer(json_t *ptr, json_t *rollout, FILE *out) {
        json_t *waves = json_object_get(ptr, "waves"), *v;
        size_t i;

        if (!ptr || json_is_null(ptr)) {
                fprintf(out, "pointer   none published\n");
                return;
        }
        fprintf(out, "pointer   %s -> %s", strempty(str(ptr, "key")), strempty(str(ptr, "sha")));
        if (str(ptr, "previous"))
                fprintf(out, " (previous %s)", str(ptr, "previous"));
        fputc('\n', out);
        if (!json_is_array(waves)) {
                fprintf(out, "waves     none: every host takes it at once\n");
                return;
        }
        fprintf(out, "waves    ");
        json_array_foreach(waves, i, v)
                fprintf(out, " %g%%", json_number_value(v));
        fprintf(out, ", one every %llds, from %s; max_failures %lld\n", (long long) num(ptr, "wave_interval_sec"),
                strempty(str(ptr, "started")), (long long) num(ptr, "max_failures"));
        fprintf(out, "open      wave %lld of %lld (%g%%)", (long long) num(rollout, "wave"),
                (long long) num(rollout, "waves"), real(rollout, "wave_percent"));
        if (str(rollout, "next_wave"))
                fprintf(out, "; the next opens %s", str(rollout, "next_wave"));
        fputc('\n', out);
}

static void print_breaker(json_t *report, FILE *out) {
        json_t *b = json_object_get(report, "breaker"), *h;
        char t1[SHOWN_MAX], t2[SHOWN_MAX], t3[SHOWN_MAX];
        size_t i;

        if (!json_is_true(json_object_get(b, "halted"))) {
                fprintf(out, "halted    no (%lld of max_failures %lld hosts rolled it back)\n",
                        (long long) num(b, "failures"), (long long) num(b, "max_failures"));
                return;
        }
        if (json_is_true(json_object_get(b, "aborted")))
                fprintf(out, "halted    yes: aborted (%s)\n", shown(b, "abort_reason", t1) ?: "no reason given");
        else
                fprintf(out, "halted    yes: %lld hosts rolled it back (max_failures %lld)\n",
                        (long long) num(b, "failures"), (long long) num(b, "max_failures"));
        json_array_foreach(json_object_get(b, "hosts"), i, h)
                fprintf(out, "            %-24s %-21s %s\n", strempty(shown(h, "host_id", t1)),
                        shown(h, "time", t2) ?: "-", shown(h, "reason", t3) ?: "-");
}

static void print_builds(json_t *report, FILE *out) {
        json_t *builds = json_object_get(report, "builds"), *states, *n;
        const char *sha, *state;
        char t1[SHOWN_MAX], t2[SHOWN_MAX];

        fprintf(out, "\n%-41s %-14s %5s\n", "BUILD", "STATE", "HOSTS");
        json_object_foreach(builds, sha, states)
                json_object_foreach(states, state, n)
                        fprintf(out, "%-41s %-14s %5lld\n", printable_copy(t1, sizeof t1, sha),
                                printable_copy(t2, sizeof t2, state), (long long) json_integer_value(n));
}

static void print_hosts(json_t *report, FILE *out) {
        char t1[SHOWN_MAX], t2[SHOWN_MAX], t3[SHOWN_MAX], t4[SHOWN_MAX];
        json_t *h;
        size_t i;

        if (json_array_size(json_object_get(report, "failed")) > 0)
                fprintf(out, "\n%-24s %-12s %-12s %s\n", "FAILED HOST", "STATE", "BUILD", "LAST ERROR");
        json_array_foreach(json_object_get(report, "failed"), i, h)
                fprintf(out, "%-24s %-12s %-12.12s %s\n", strempty(shown(h, "host_id", t1)),
                        strempty(shown(h, "state", t2)), shown(h, "current", t3) ?: "-",
                        shown(h, "last_error", t4) ?: "-");
        if (json_array_size(json_object_get(report, "stale")) > 0)
                fprintf(out, "\n%-24s %-21s %s\n", "STALE HOST", "LAST REPORT", "AGE");
        json_array_foreach(json_object_get(report, "stale"), i, h)
                fprintf(out, "%-24s %-21s %llds\n", strempty(shown(h, "host_id", t1)), shown(h, "time", t2) ?: "never",
                        (long long) num(h, "age_sec"));
        json_array_foreach(json_object_get(report, "unreadable"), i, h)
                fprintf(out, "unreadable status %s: %s\n", strempty(shown(h, "key", t1)),
                        strempty(shown(h, "error", t2)));
}

void fleet_print_status(json_t *report, FILE *out) {
        json_t *rollout = json_object_get(report, "rollout");

        fprintf(out, "service   %s\n", strempty(str(report, "service")));
        print_pointer(json_object_get(report, "pointer"), rollout, out);
        if (json_is_object(rollout))
                fprintf(out, "on build  %lld of %lld hosts (%.1f%%) against %g%% open\n",
                        (long long) num(rollout, "hosts_on_build"), (long long) num(rollout, "hosts"),
                        real(rollout, "share_percent"), real(rollout, "wave_percent"));
        fprintf(out, "paused    %s\n", json_is_true(json_object_get(report, "paused")) ? "yes" : "no");
        if (json_is_object(json_object_get(report, "breaker")))
                print_breaker(report, out);
        fprintf(out, "hosts     %zu reporting, %zu stale, %zu failed\n",
                json_array_size(json_object_get(report, "hosts")), json_array_size(json_object_get(report, "stale")),
                json_array_size(json_object_get(report, "failed")));
        print_builds(report, out);
        print_hosts(report, out);
}
