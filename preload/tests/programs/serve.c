/* A small TCP server for the preload tests: binds the addresses it is given
 * the way real servers do, says where it listens, and answers connections.
 *
 * usage: serve [-a] [-p] [-6] [-g] [-u] [-t] [-w N] HOST PORT [HOST PORT ...]
 *   -a  SO_REUSEADDR            -p  SO_REUSEPORT
 *   -6  IPV6_V6ONLY on v6 sockets
 *   -g  after binding print "bound HOST PORT" and wait for a line on stdin
 *       before listen() (lets a test create a conflict that shows at listen)
 *   -u  UDP: bind only, print "bound HOST PORT", exit
 *   -t  bind every address from its own thread, all at the same moment
 *   -w N  fork N workers; each binds and listens its own sockets
 * Prints "listening HOST PORT PID" per socket (the port from getsockname),
 * then answers each connection with "serve PID PORT\n". A failing call
 * prints "CALL HOST PORT: strerror" on stderr and exits 1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SOCKETS 16

static int reuseaddr, reuseport, v6only, wait_go, udp, threaded, workers;
static int count;
static const char *hosts[MAX_SOCKETS];
static int ports[MAX_SOCKETS];
static int fds[MAX_SOCKETS];
static pthread_barrier_t start_line;

static void fail(const char *call, int i) {
    fprintf(stderr, "%s %s %d: %s\n", call, hosts[i], ports[i], strerror(errno));
    exit(1);
}

static int port_of(int fd) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0) return -1;
    if (ss.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Creates and binds socket i (no listen). */
static void bind_one(int i) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    int family;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, hosts[i], &v4->sin_addr) == 1) {
        family = v4->sin_family = AF_INET;
        v4->sin_port = htons(ports[i]);
        len = sizeof *v4;
    } else if (inet_pton(AF_INET6, hosts[i], &v6->sin6_addr) == 1) {
        family = v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(ports[i]);
        len = sizeof *v6;
    } else {
        fprintf(stderr, "bad host %s\n", hosts[i]);
        exit(2);
    }
    int fd = socket(family, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
    if (fd < 0) fail("socket", i);
    int one = 1;
    if (reuseaddr) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (v6only && family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (threaded) pthread_barrier_wait(&start_line);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0) fail("bind", i);
    fds[i] = fd;
}

static void listen_one(int i) {
    if (listen(fds[i], 64) != 0) fail("listen", i);
    printf("listening %s %d %d\n", hosts[i], port_of(fds[i]), (int)getpid());
}

static void *bind_and_listen(void *arg) {
    int i = (int)(long)arg;
    bind_one(i);
    listen_one(i);
    return NULL;
}

static void serve(void) {
    struct pollfd pfds[MAX_SOCKETS];
    for (int i = 0; i < count; i++) pfds[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    for (;;) {
        if (poll(pfds, count, -1) < 0) {
            if (errno == EINTR) continue;
            exit(1);
        }
        for (int i = 0; i < count; i++) {
            if (!(pfds[i].revents & POLLIN)) continue;
            int c = accept(fds[i], NULL, NULL);
            if (c < 0) continue;
            char reply[64];
            int n = snprintf(reply, sizeof reply, "serve %d %d\n", (int)getpid(), port_of(fds[i]));
            (void)!write(c, reply, n);
            close(c);
        }
    }
}

static void run(void) {
    if (threaded) {
        pthread_t tids[MAX_SOCKETS];
        pthread_barrier_init(&start_line, NULL, count);
        for (int i = 0; i < count; i++) pthread_create(&tids[i], NULL, bind_and_listen, (void *)(long)i);
        for (int i = 0; i < count; i++) pthread_join(tids[i], NULL);
    } else {
        for (int i = 0; i < count; i++) bind_one(i);
        if (udp || wait_go) {
            for (int i = 0; i < count; i++) printf("bound %s %d\n", hosts[i], port_of(fds[i]));
            if (udp) exit(0);
            char line[16];
            if (!fgets(line, sizeof line, stdin)) exit(3);
        }
        for (int i = 0; i < count; i++) listen_one(i);
    }
    serve();
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    int opt;
    while ((opt = getopt(argc, argv, "ap6gutw:")) != -1) {
        switch (opt) {
        case 'a': reuseaddr = 1; break;
        case 'p': reuseport = 1; break;
        case '6': v6only = 1; break;
        case 'g': wait_go = 1; break;
        case 'u': udp = 1; break;
        case 't': threaded = 1; break;
        case 'w': workers = atoi(optarg); break;
        default: return 2;
        }
    }
    for (int i = optind; i + 1 < argc && count < MAX_SOCKETS; i += 2, count++) {
        hosts[count] = argv[i];
        ports[count] = atoi(argv[i + 1]);
    }
    if (count == 0) return 2;
    if (workers <= 0) {
        run();
        return 0;
    }
    for (int w = 0; w < workers; w++) {
        if (fork() == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            run();
        }
    }
    while (wait(NULL) > 0) {}
    return 0;
}
