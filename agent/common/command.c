/* command.c: fork/exec /bin/sh -c with a deadline. */
#define _GNU_SOURCE
#include "common/command.h"

#include <signal.h>
#include <sys/wait.h>

#include "common/util.h"

_Noreturn static void exec_shell(const char *cmd, const char *cwd, char *const *env) {
        sigset_t none;

        (void) setpgid(0, 0);
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        if (cwd && chdir(cwd) < 0)
                _exit(126);
        for (char *const *e = env; e && *e; e++)
                if (putenv(*e) < 0)
                        _exit(126);
        if (dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
                _exit(126);
        execl("/bin/sh", "sh", "-c", cmd, (char *) NULL);
        _exit(127);
}

int command_run(const char *cmd, const char *cwd, char *const *env, uint64_t timeout_usec, int *ret_status) {
        uint64_t deadline = now_usec(CLOCK_MONOTONIC) + timeout_usec;
        int status;
        pid_t pid;

        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0)
                exec_shell(cmd, cwd, env);
        (void) setpgid(pid, pid);
        for (;;) {
                pid_t p = waitpid(pid, &status, WNOHANG);
                if (p == pid)
                        break;
                if (p < 0 && errno != EINTR)
                        return -errno;
                if (now_usec(CLOCK_MONOTONIC) >= deadline) {
                        (void) kill(-pid, SIGKILL);
                        (void) waitpid(pid, &status, 0);
                        return -ETIMEDOUT;
                }
                (void) usleep(10000);
        }
        (void) kill(-pid, SIGKILL); /* leftovers of the group: a hook owns no daemons */
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        if (ret_status)
                *ret_status = status;
        return -ECHILD;
}

const char *command_describe_status(int status, char *buf, size_t size) {
        if (WIFEXITED(status))
                snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
                snprintf(buf, size, "killed by SIG%s", sigabbrev_np(WTERMSIG(status)) ?: "?");
        else
                snprintf(buf, size, "ended abnormally");
        return buf;
}
