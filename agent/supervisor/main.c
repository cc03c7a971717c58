/* main.c: deploy-agent's command line: run, once, check-config, --version,
 * and the hidden --worker STEP, forwarded to deploy-agent-worker. */
#define _GNU_SOURCE
#include <getopt.h>
#include <signal.h>

#include "config/config.h"
#include "common/log.h"
#include "supervisor/control-commands.h"
#include "supervisor/manager.h"
#include "common/util.h"
#include "version.h"
#include "supervisor/worker-pool.h"

enum {
        EXIT_OK = 0,
        EXIT_FAILED = 1,
        EXIT_USAGE = 2,
        EXIT_UNKNOWN_SERVICE = 3,
};

static void help(void) {
        printf("Usage: deploy-agent [-c FILE] [COMMAND]\n"
               "Keep services at the newest build CI published to S3.\n\n"
               "Commands:\n"
               "  run                  run the daemon in the foreground (default)\n"
               "  once [SERVICE]       one discover+deploy pass for every (or one) service, then exit\n"
               "  check-config [-v]    validate the configuration; -v prints it normalized\n\n"
               "Options:\n"
               "  -c, --config FILE    configuration file (default %s)\n"
               "  -h, --help           show this help\n"
               "      --version        print the git SHA this binary was built from\n\n"
               "Exit status: 0 ok, 1 a deploy failed, 2 usage or configuration error,\n"
               "3 unknown service. See deploy-agent(8) and deploy.ini(5).\n",
               CONFIG_DEFAULT_PATH);
}

/* One log line per problem: config_load reports them all, one per line. */
static int load_config(const char *path, Config **ret) {
        _cleanup_free_ char *error = NULL;
        int r = config_load(path, ret, &error);

        if (r < 0 && !error)
                log_error("%s", strerror(-r));
        for (const char *p = error; r < 0 && p && *p;) {
                size_t n = strcspn(p, "\n");

                log_error("%.*s", (int) n, p);
                p += n + (p[n] == '\n');
        }
        return r;
}

static int cmd_check_config(const char *path, int argc, char **argv) {
        _cleanup_config_ Config *cfg = NULL;
        bool verbose = argc > 1 && streq(argv[1], "-v");

        if (argc > (verbose ? 2 : 1))
                return log_error("check-config: unexpected argument \"%s\"", argv[argc - 1]), EXIT_USAGE;
        if (load_config(path, &cfg) < 0)
                return EXIT_USAGE;
        if (verbose)
                config_print(cfg, stdout);
        else
                printf("%s: ok, %zu service%s\n", path, cfg->n_services, cfg->n_services == 1 ? "" : "s");
        return EXIT_OK;
}

/* VmHWM, not getrusage(): ru_maxrss survives execve and would report the
 * peak of whatever ran this process before (a shell, a test runner). */
static void log_peak_rss(void) {
        _cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
        char line[256];

        while (f && fgets(line, sizeof line, f))
                if (strncmp(line, "VmHWM:", 6) == 0)
                        log_debug("supervisor: peak RSS %ld KiB", strtol(line + 6, NULL, 10));
}

static int run_manager(const char *path, bool once, const char *service) {
        Manager *m = NULL;
        int r;

        r = manager_new(path, once, service, control_commands_dispatch, &m);
        if (r == -ENOENT)
                return EXIT_UNKNOWN_SERVICE;
        if (r < 0)
                return EXIT_USAGE;
        if (!once)
                log_info("deploy-agent %s starting", DEPLOY_AGENT_VERSION);
        r = manager_run(m);
        manager_free(m);
        log_peak_rss();
        return r == 0 ? EXIT_OK : EXIT_FAILED;
}

static int cmd_once(const char *path, int argc, char **argv) {
        if (argc > 2)
                return log_error("once: takes at most one SERVICE"), EXIT_USAGE;
        return run_manager(path, true, argc == 2 ? argv[1] : NULL);
}

static int cmd_run(const char *path, int argc, char **argv) {
        if (argc > 1)
                return log_error("run: unexpected argument \"%s\"", argv[1]), EXIT_USAGE;
        return run_manager(path, false, NULL);
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "worker", required_argument, NULL, 'W' },
                {}
        };
        const char *config_path = CONFIG_DEFAULT_PATH, *cmd;
        int c;

        while ((c = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0)
                switch (c) {
                case 'c':
                        config_path = optarg;
                        break;
                case 'h':
                        help();
                        return EXIT_OK;
                case 'V':
                        printf("%s\n", DEPLOY_AGENT_VERSION);
                        return EXIT_OK;
                case 'W': {
                        /* kept for tools that run a step by hand; workers are their own binary */
                        char *wargv[] = { (char *) "deploy-agent-worker", (char *) "--worker", optarg, NULL };
                        int r = worker_binary_exec(wargv);
                        log_error_errno(r, "cannot run deploy-agent-worker: %m");
                        return EXIT_FAILED;
                }
                default:
                        return EXIT_USAGE;
                }
        (void) signal(SIGPIPE, SIG_IGN);
        argc -= optind;
        argv += optind;
        cmd = argc > 0 ? argv[0] : "run";
        if (streq(cmd, "check-config"))
                return cmd_check_config(config_path, argc, argv);
        if (streq(cmd, "once"))
                return cmd_once(config_path, argc, argv);
        if (streq(cmd, "run"))
                return cmd_run(config_path, argc, argv);
        log_error("unknown command \"%s\"; see --help", cmd);
        return EXIT_USAGE;
}
