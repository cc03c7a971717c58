/* deployctl.c: the operator's client. The control socket it talks to comes
 * with the daemon; until then it only reports its version. */
#include <getopt.h>

#include "publish.h"
#include "util.h"
#include "version.h"

static void help(void) {
        printf("Usage: deployctl [--version] [--help] COMMAND ...\n"
               "Query and drive deploy-agent over its control socket.\n"
               "  deployctl [-c FILE] publish ...   upload a build for the agents (--help)\n"
               "The control socket is not built yet: no command is available.\n");
}

int main(int argc, char **argv) {
        static const struct option options[] = {
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, 'V' },
                { "config", required_argument, NULL, 'c' },
                {}
        };
        const char *config_path = NULL;
        int c;

        while ((c = getopt_long(argc, argv, "+hc:", options, NULL)) >= 0)
                switch (c) {
                case 'h':
                        help();
                        return 0;
                case 'V':
                        printf("%s\n", DEPLOY_AGENT_VERSION);
                        return 0;
                case 'c':
                        config_path = optarg;
                        break;
                default:
                        return 2;
                }
        if (optind < argc && streq(argv[optind], "publish"))
                return publish_main(config_path, argc - optind, argv + optind);
        fprintf(stderr, "deployctl: the control socket is not built yet\n");
        return 5;
}
