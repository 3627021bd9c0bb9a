/* Run a command and time it: timed OUT CMD [ARG...]
 *
 * Writes "SECONDS MAXRSS_KB CPU_SECONDS" to OUT (CPU: user + system of
 * the command and the children it waited for) and exits with the command's status
 * (128 + N when signal N killed it). The clock starts right before the
 * fork and stops when wait4 returns, so the figure is the command's own
 * run plus one fork and exec of this small process: no shell subshell, no
 * /usr/bin/time and no `date` processes around it (those cost 3-5 ms on
 * every run, the same for every tool, which pulled every ratio towards 1).
 *
 * It is C, not Python, because the kernel counts the forked timer's
 * resident pages in the child's peak RSS (exec keeps the higher of the old
 * and the new image's): a forked Python reports about 10 MB for /bin/true,
 * this program about 1 MB, as /usr/bin/time does.
 *
 * bench/run.sh compiles it with cc into its work directory. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: timed OUT CMD [ARG...]\n");
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pid_t pid = fork();
    if (pid < 0) {
        perror("timed: fork");
        return 127;
    }
    if (pid == 0) {
        execvp(argv[2], argv + 2);
        fprintf(stderr, "timed: %s: %s\n", argv[2], strerror(errno));
        _exit(127);
    }
    int status;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            perror("timed: wait4");
            return 127;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    double cpu = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
        + (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
    FILE *f = fopen(argv[1], "w");
    if (f == NULL || fprintf(f, "%.4f %ld %.4f\n", secs, ru.ru_maxrss, cpu) < 0 || fclose(f) != 0) {
        perror("timed: writing the result");
        return 127;
    }
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}
