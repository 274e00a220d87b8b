/* Times a system call no filter rule matches, for the supervisor benchmark.
 *
 * usage: syscalls BATCHES CALLS
 * Makes BATCHES batches of CALLS raw getppid() calls and prints each
 * batch's mean per call in nanoseconds, one line per batch.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int batches = atoi(argv[1]), calls = atoi(argv[2]);
    for (int b = 0; b < batches; b++) {
        long long start = now_ns();
        for (int i = 0; i < calls; i++) syscall(SYS_getppid);
        printf("%lld\n", (now_ns() - start) / calls);
    }
    return 0;
}
