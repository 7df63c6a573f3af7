/* The floor: the least a supervisor must do to respawn a child that exits at once.
 *   floor fork|spawn N PROG
 * runs PROG N times, one after the other: fork()+execv()+waitpid(), or posix_spawn()+waitpid()
 * (glibc's posix_spawn uses clone(CLONE_VM|CLONE_VFORK), the cheapest way to start a program).
 * PROG is the stamp child, which records its own start and end; the gaps are computed from its
 * file exactly as for a supervisor. */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: floor fork|spawn N PROG\n");
        return 2;
    }
    int spawn = strcmp(argv[1], "spawn") == 0;
    long n = atol(argv[2]);
    char *prog = argv[3];
    char *args[] = {prog, NULL};
    for (long i = 0; i < n; i++) {
        pid_t pid;
        if (spawn) {
            if (posix_spawn(&pid, prog, NULL, NULL, args, environ) != 0) return 1;
        } else {
            pid = fork();
            if (pid < 0) return 1;
            if (pid == 0) {
                execv(prog, args);
                _exit(127);
            }
        }
        int st;
        if (waitpid(pid, &st, 0) != pid) return 1;
    }
    return 0;
}
