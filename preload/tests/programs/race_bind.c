/* Binds one address over and over while a second thread flips its port
 * between two values, the race a supervisor that lets the kernel re-read
 * the address after checking it would lose.
 *
 * usage: race_bind HOST FREE_PORT RESERVED_PORT ROUNDS
 * Prints "bound FREE N RESERVED N OTHER N" (what each bind's socket ended
 * up on) and exits 0.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in addr;
static int free_port, reserved_port;
static atomic_int stop;

static void *flip(void *unused) {
    (void)unused;
    while (!atomic_load(&stop)) {
        ((volatile struct sockaddr_in *)&addr)->sin_port = htons(free_port);
        ((volatile struct sockaddr_in *)&addr)->sin_port = htons(reserved_port);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: race_bind HOST FREE_PORT RESERVED_PORT ROUNDS\n");
        return 2;
    }
    addr.sin_family = AF_INET;
    inet_pton(AF_INET, argv[1], &addr.sin_addr);
    free_port = atoi(argv[2]);
    reserved_port = atoi(argv[3]);
    int rounds = atoi(argv[4]);
    addr.sin_port = htons(free_port);
    pthread_t flipper;
    pthread_create(&flipper, NULL, flip, NULL);
    int on_free = 0, on_reserved = 0, other = 0;
    for (int i = 0; i < rounds; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
            struct sockaddr_in got;
            socklen_t len = sizeof got;
            getsockname(fd, (struct sockaddr *)&got, &len);
            int port = ntohs(got.sin_port);
            if (port == free_port) on_free++;
            else if (port == reserved_port) on_reserved++;
            else other++;
        }
        close(fd);
    }
    atomic_store(&stop, 1);
    pthread_join(flipper, NULL);
    printf("bound FREE %d RESERVED %d OTHER %d\n", on_free, on_reserved, other);
    return 0;
}
