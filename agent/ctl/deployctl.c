/* deployctl.c: the operator's client (docs/design.md, "Control protocol"):
 * queries and drives deploy-agent over its control socket, and publishes
 * builds for CI (publish.c). Human output by default, one JSON object with
 * --json. */
#define _GNU_SOURCE
#include <getopt.h>
#include <signal.h>

#include "config/config.h"
#include "ctl/ctl-client.h"
#include "ctl/ctl-print.h"
#include "ctl/fleet.h"
#include "ctl/publish.h"
#include "common/util.h"
#include "version.h"

#define REQUEST_TIMEOUT_USEC (30 * USEC_PER_SEC)
#define WAIT_TIMEOUT_USEC (30 * 60 * USEC_PER_SEC)

typedef struct Ctl {
        const char *socket;
        bool json;
        bool tty;
} Ctl;

typedef struct Command {
        const char *name;
        const char *usage;
        const char *help;
        int (*run)(Ctl *ctl, int argc, char **argv);
} Command;

static const Command *find_command(const char *name);

static int usage_error(const char *cmd, const char *fmt, ...) _printf_(2, 3);
static int usage_error(const char *cmd, const char *fmt, ...) {
        va_list ap;

        fprintf(stderr, "deployctl %s: ", cmd);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fprintf(stderr, "\nTry 'deployctl %s --help'.\n", cmd);
        return CTL_EXIT_USAGE;
}

static void command_help(const Command *c) {
        printf("Usage: deployctl [-s SOCKET] [--json] %s %s\n%s", c->name, c->usage, c->help);
}

/* With --json, a failure before any answer is one object too: Ansible's
 * changed_when/from_json then read a reason instead of an empty string. */
static int transport_error(Ctl *ctl, int exit_code, const char *code, const char *fmt, ...) _printf_(4, 5);
static int transport_error(Ctl *ctl, int exit_code, const char *code, const char *fmt, ...) {
        _cleanup_free_ char *message = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&message, fmt, ap) < 0)
                message = NULL;
        va_end(ap);
        fprintf(stderr, "deployctl: %s\n", message ?: code);
        if (ctl->json) {
                json_t *res = json_pack("{s:b,s:b,s:{s:s,s:s}}", "ok", 0, "changed", 0, "error", "code", code,
                                        "message", message ?: code);
                if (res)
                        ctl_print_json(res);
                json_decref(res);
        }
        return exit_code;
}

/* Send req; stream events (a progress line on a TTY) until the answer. */
static int transact(Ctl *ctl, json_t *req, uint64_t timeout_usec, json_t **ret) {
        CtlConnection conn = { .fd = -1 };
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;
        int r;

        r = ctl_connect(ctl->socket, &conn);
        if (r == -EACCES || r == -EPERM)
                return transport_error(ctl, CTL_EXIT_DENIED, "permission_denied",
                                       "may not connect to %s: %s (members of the admin group may)", ctl->socket,
                                       strerror(-r));
        if (r < 0)
                return transport_error(ctl, CTL_EXIT_UNREACHABLE, "unreachable",
                                       "agent unreachable at %s: %s; is deploy-agent running?", ctl->socket,
                                       strerror(-r));
        r = ctl_send(&conn, req);
        while (r >= 0) {
                json_t *msg = NULL;
                r = ctl_receive(&conn, deadline, &msg);
                if (r < 0)
                        break;
                if (!json_object_get(msg, "event")) {
                        *ret = msg;
                        break;
                }
                if (ctl->tty && !ctl->json)
                        ctl_print_progress(msg);
                json_decref(msg);
        }
        ctl_close(&conn);
        if (ctl->tty && !ctl->json)
                ctl_print_progress(NULL);
        if (r == -ETIMEDOUT)
                return transport_error(ctl, CTL_EXIT_TIMEOUT, "timed_out",
                                       "timed out waiting for the agent (what it was asked goes on)");
        if (r < 0)
                return transport_error(ctl, CTL_EXIT_UNREACHABLE, "unreachable", "lost the agent: %s", strerror(-r));
        return 0;
}

/* Run req and print the answer; the exit code says how it went. */
static int call(Ctl *ctl, json_t *req, uint64_t timeout_usec, void (*print)(json_t *res)) {
        json_t *res = NULL;
        int r;

        r = transact(ctl, req, timeout_usec, &res);
        json_decref(req);
        if (r != 0)
                return r;
        r = ctl_exit_code(res);
        if (ctl->json)
                ctl_print_json(res);
        else if (r != 0)
                ctl_print_error(res);
        else if (print)
                print(res);
        json_decref(res);
        return r;
}

static json_t *request(const char *cmd, const char *service) {
        json_t *req = json_pack("{s:s}", "cmd", cmd);

        if (req && service)
                json_object_set_new(req, "service", json_string(service));
        return req;
}

static int parse_wait_options(const char *cmd, int argc, char **argv, const char *sha_option, const char **ret_sha,
                              bool *ret_wait, uint64_t *ret_timeout) {
        const struct option options[] = {
                { sha_option, required_argument, NULL, 's' },
                { "wait", no_argument, NULL, 'w' },
                { "timeout", required_argument, NULL, 't' },
                { "help", no_argument, NULL, 'h' },
                {}
        };
        int c;

        optind = 0; /* 0, not 1: glibc re-reads the option string (permute, not "+") */
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0)
                switch (c) {
                case 's':
                        if (!sha_is_valid(optarg))
                                return usage_error(cmd, "--%s takes 7 to 40 lowercase hex digits", sha_option);
                        *ret_sha = optarg;
                        break;
                case 'w':
                        *ret_wait = true;
                        break;
                case 't':
                        if (config_parse_duration(optarg, ret_timeout) < 0 || *ret_timeout == 0)
                                return usage_error(cmd, "--timeout takes a duration like 90s or 10m");
                        break;
                case 'h':
                        command_help(find_command(cmd));
                        exit(CTL_EXIT_OK);
                default:
                        return CTL_EXIT_USAGE;
                }
        if (optind != argc - 1)
                return usage_error(cmd, "takes exactly one SERVICE");
        return 0;
}

static int change_with_wait(Ctl *ctl, const char *cmd, const char *sha_field, const char *sha_option,
                            int argc, char **argv) {
        const char *sha = NULL;
        bool wait = false;
        uint64_t timeout = WAIT_TIMEOUT_USEC;
        json_t *req;
        int r;

        r = parse_wait_options(cmd, argc, argv, sha_option, &sha, &wait, &timeout);
        if (r != 0)
                return r;
        req = request(cmd, argv[optind]);
        if (sha)
                json_object_set_new(req, sha_field, json_string(sha));
        if (wait)
                json_object_set_new(req, "wait", json_true());
        return call(ctl, req, wait ? timeout : REQUEST_TIMEOUT_USEC, ctl_print_change);
}

static int cmd_deploy(Ctl *ctl, int argc, char **argv) {
        return change_with_wait(ctl, "deploy", "sha", "sha", argc, argv);
}

static int cmd_rollback(Ctl *ctl, int argc, char **argv) {
        return change_with_wait(ctl, "rollback", "to", "to", argc, argv);
}

/* Commands with an optional or required SERVICE and no options. */
static int simple(Ctl *ctl, const char *cmd, int argc, char **argv, bool service_required, bool service_allowed,
                  void (*print)(json_t *res)) {
        static const struct option options[] = { { "help", no_argument, NULL, 'h' }, {} };
        int c, n;

        optind = 0; /* 0, not 1: glibc re-reads the option string (permute, not "+") */
        while ((c = getopt_long(argc, argv, "h", options, NULL)) >= 0) {
                if (c != 'h')
                        return CTL_EXIT_USAGE;
                command_help(find_command(cmd));
                return CTL_EXIT_OK;
        }
        n = argc - optind;
        if (n > (service_allowed ? 1 : 0) || (service_required && n < 1))
                return usage_error(cmd, service_required ? "takes exactly one SERVICE"
                                        : service_allowed ? "takes at most one SERVICE" : "takes no arguments");
        return call(ctl, request(cmd, n ? argv[optind] : NULL), REQUEST_TIMEOUT_USEC, print);
}

static int cmd_status(Ctl *ctl, int argc, char **argv) {
        return simple(ctl, "status", argc, argv, false, true, ctl_print_status);
}

static int cmd_version(Ctl *ctl, int argc, char **argv) {
        return simple(ctl, "version", argc, argv, true, true, ctl_print_version);
}

static int cmd_history(Ctl *ctl, int argc, char **argv) {
        return simple(ctl, "history", argc, argv, true, true, ctl_print_history);
}

static int cmd_pause(Ctl *ctl, int argc, char **argv) {
        return simple(ctl, "pause", argc, argv, true, true, ctl_print_change);
}

static int cmd_resume(Ctl *ctl, int argc, char **argv) {
        return simple(ctl, "resume", argc, argv, true, true, ctl_print_change);
}

static int cmd_check(Ctl *ctl, int argc, char **argv) {
        return simple(ctl, "check", argc, argv, false, true, NULL);
}

static int cmd_reload(Ctl *ctl, int argc, char **argv) {
        return simple(ctl, "reload", argc, argv, false, false, NULL);
}

static const Command commands[] = {
        { "status", "[SERVICE]", "Show the agent's version and uptime, and per service: current and previous\n"
          "release, what it is doing, last poll, last error, bad releases, pause and pin.\n", cmd_status },
        { "version", "SERVICE", "Print the deployed sha of SERVICE and nothing else (exit 3 if none).\n",
          cmd_version },
        { "deploy", "SERVICE [--sha SHA] [--wait] [--timeout DUR]",
          "Deploy the newest build now, or with --sha that build, which pins SERVICE there:\n"
          "automatic deploys stop until 'deploy' without --sha or 'resume'. --wait follows the\n"
          "deploy to its end (default timeout 30m); --json prints {\"changed\": ...}.\n", cmd_deploy },
        { "rollback", "SERVICE [--to SHA] [--wait] [--timeout DUR]",
          "Go back to the previous good release (or --to a release on disk) and mark the one\n"
          "left bad; automatic deploys go on with the next newer build.\n", cmd_rollback },
        { "pause", "SERVICE", "Stop automatic deploys of SERVICE (survives restarts); change nothing else.\n",
          cmd_pause },
        { "resume", "SERVICE", "Resume automatic deploys of SERVICE and unpin it.\n", cmd_resume },
        { "check", "[SERVICE]", "Poll S3 now instead of at the next interval.\n", cmd_check },
        { "history", "SERVICE", "List the last deploys of SERVICE, oldest first.\n", cmd_history },
        { "reload", "", "Reload the agent's configuration (a bad file keeps the running one).\n", cmd_reload },
};

static const Command *find_command(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(commands[i].name, name))
                        return &commands[i];
        return NULL;
}

static void help(FILE *f) {
        fprintf(f, "Usage: deployctl [-s SOCKET] [-c FILE] [--json] COMMAND [ARGS]\n"
               "Query and drive deploy-agent over its control socket.\n\nCommands:\n");
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].usage);
        fprintf(f, "  %-9s --bucket B --prefix P --sha SHA [--suffix S] [--minisig F] [--pointer K "
               "[--waves W --wave-interval D [--max-failures N]]] FILE\n"
               "  fleet     status|pause|resume|abort SERVICE (a rollout across hosts, through S3)\n"
               "\nOptions:\n"
               "  -s, --socket PATH  control socket (default: [agent] socket of the config, else %s)\n"
               "  -c, --config FILE  configuration file (default %s)\n"
               "      --json         print one JSON object (with \"changed\") instead of text\n"
               "  -h, --help         this help; COMMAND --help for one command\n"
               "      --version      print the git SHA deployctl was built from\n\n"
               "Exit status: 0 ok, 1 failed, 2 usage, 3 unknown service or nothing deployed,\n"
               "4 permission denied, 5 agent unreachable, 6 timed out, 7 the pointer changed since\n"
               "it was read (another operator?): nothing written, 8 refused (fleet abort with no\n"
               "previous build).\n",
               "publish", CTL_DEFAULT_SOCKET, CONFIG_DEFAULT_PATH);
}

/* -s wins; else the config's [agent] socket when the file is readable
 * (it may hold secrets: an operator without access gets the default). */
static const char *socket_path(const char *option, const char *config_path, Config **cfg) {
        if (option)
                return option;
        if (access(config_path, R_OK) == 0 && config_load(config_path, cfg, NULL) >= 0)
                return (*cfg)->agent.socket;
        return CTL_DEFAULT_SOCKET;
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "socket", required_argument, NULL, 's' },
                { "config", required_argument, NULL, 'c' },
                { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                {}
        };
        const char *socket_option = NULL, *config_path = NULL;
        _cleanup_config_ Config *cfg = NULL;
        Ctl ctl = { .tty = isatty(STDERR_FILENO) };
        const Command *cmd;
        int c;

        (void) signal(SIGPIPE, SIG_IGN); /* an agent that hangs up is an error to report, not a death */

        while ((c = getopt_long(argc, argv, "+s:c:h", options, NULL)) >= 0)
                switch (c) {
                case 's': socket_option = optarg; break;
                case 'c': config_path = optarg; break;
                case 'j': ctl.json = true; break;
                case 'h': help(stdout); return CTL_EXIT_OK;
                case 'V': printf("%s\n", DEPLOY_AGENT_VERSION); return CTL_EXIT_OK;
                default: return CTL_EXIT_USAGE;
                }
        if (optind >= argc)
                return help(stderr), CTL_EXIT_USAGE;
        if (streq(argv[optind], "publish"))
                return publish_main(config_path, argc - optind, argv + optind);
        if (streq(argv[optind], "fleet"))
                return fleet_main(config_path, ctl.json, argc - optind, argv + optind);
        cmd = find_command(argv[optind]);
        if (!cmd)
                return fprintf(stderr, "deployctl: unknown command \"%s\"; see --help\n", argv[optind]), CTL_EXIT_USAGE;
        ctl.socket = socket_path(socket_option, config_path ?: CONFIG_DEFAULT_PATH, &cfg);
        return cmd->run(&ctl, argc - optind, argv + optind);
}
