/* The benchmark child. At entry it reads CLOCK_MONOTONIC (t0), appends "t0 t1\n" (nanoseconds;
 * t1 read just before the write) to $STAMP_FILE in one O_APPEND write, then exits 0 at once,
 * or, with STAMP_HOLD=1, waits for a signal (SIGTERM ends it: the default action).
 * Configured through the environment only, because runsv and s6-supervise run ./run with
 * arguments of their own choosing. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(void) {
    long long t0 = now_ns();
    const char *file = getenv("STAMP_FILE");
    const char *hold = getenv("STAMP_HOLD");
    if (file) {
        int fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            char buf[64];
            long long t1 = now_ns();
            int n = snprintf(buf, sizeof buf, "%lld %lld\n", t0, t1);
            if (write(fd, buf, (size_t)n) != n) return 2;
            close(fd);
        }
    }
    if (hold && hold[0] == '1')
        for (;;) pause();
    return 0;
}
