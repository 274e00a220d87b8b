/* Times bind()+listen() for the preload and supervisor benchmarks.
 *
 * usage: bench [-r REPEAT] HOST PORT [PORT ...]
 *        bench -c [-r REPEAT] HOST PORT [PORT ...]
 *        bench -s CALLS [-r REPEAT]
 * For each repetition and each port: socket (SO_REUSEADDR), then bind and
 * listen timed together, then close. Prints one duration in nanoseconds per
 * line. Without ports it exits at once (start-up cost). Exits 1 on error.
 * With -c: a connect() to each port instead, timed alone (a refused one
 * counts; the socket is closed after each).
 * With -s: REPEAT batches of CALLS raw getppid() calls (a call no filter
 * rule matches), each batch's mean per call in nanoseconds, one a line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    int repeat = 1, calls = 0, connecting = 0, opt;
    while ((opt = getopt(argc, argv, "cr:s:")) != -1) {
        if (opt == 'r') repeat = atoi(optarg);
        else if (opt == 'c') connecting = 1;
        else if (opt == 's') calls = atoi(optarg);
        else return 2;
    }
    for (int r = 0; calls > 0 && r < repeat; r++) {
        long long start = now_ns();
        for (int i = 0; i < calls; i++) syscall(SYS_getppid);
        printf("%lld\n", (now_ns() - start) / calls);
    }
    if (optind >= argc) return 0;
    const char *host = argv[optind];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    socklen_t len;
    int family;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        family = v4->sin_family = AF_INET;
        len = sizeof *v4;
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        family = v6->sin6_family = AF_INET6;
        len = sizeof *v6;
    } else {
        return 2;
    }
    for (int r = 0; r < repeat; r++) {
        for (int i = optind + 1; i < argc; i++) {
            int port = atoi(argv[i]);
            if (family == AF_INET) v4->sin_port = htons(port);
            else v6->sin6_port = htons(port);
            int fd = socket(family, SOCK_STREAM, 0);
            if (connecting) {
                long long t0 = now_ns();
                int rc = connect(fd, (struct sockaddr *)&ss, len);
                long long t1 = now_ns();
                if (rc != 0 && errno != ECONNREFUSED) {
                    perror("connect");
                    return 1;
                }
                printf("%lld\n", t1 - t0);
                close(fd);
                continue;
            }
            int one = 1;
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            long long t0 = now_ns();
            if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 64) != 0) {
                perror("bind/listen");
                return 1;
            }
            long long t1 = now_ns();
            printf("%lld\n", t1 - t0);
            close(fd);
        }
    }
    return 0;
}
