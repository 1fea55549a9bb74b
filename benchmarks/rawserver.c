/* A raw HTTP/1.1 server for measuring load generators: every request, whatever it asks,
 * gets the same 200 "ok" on a keep-alive connection. One thread, epoll, no parsing beyond
 * finding the end of each request head (requests carry no body). Loopback only.
 *
 *   cc -O2 -o rawserver rawserver.c && ./rawserver 8080
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <fcntl.h>
#include <arpa/inet.h>

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok";

struct conn { int fd; int matched; };

static int nonblocking(int fd) { return fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    signal(SIGPIPE, SIG_IGN);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) || listen(listener, 1024)) {
        perror("bind/listen");
        return 1;
    }
    nonblocking(listener);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
    struct epoll_event events[256];
    char buf[65536];
    char out[sizeof RESPONSE * 64];
    fprintf(stderr, "rawserver listening on 127.0.0.1:%d\n", port);
    for (;;) {
        int n = epoll_wait(ep, events, 256, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c == NULL) {
                for (;;) {
                    int fd = accept(listener, NULL, NULL);
                    if (fd < 0) break;
                    nonblocking(fd);
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            ssize_t got = read(c->fd, buf, sizeof buf);
            if (got <= 0) {
                if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
                close(c->fd);
                free(c);
                continue;
            }
            /* count request heads: each ends with \r\n\r\n (state kept across reads) */
            int answers = 0;
            static const char END[] = "\r\n\r\n";
            for (ssize_t k = 0; k < got; k++) {
                c->matched = buf[k] == END[c->matched] ? c->matched + 1 : (buf[k] == '\r');
                if (c->matched == 4) { answers++; c->matched = 0; }
            }
            size_t len = 0;
            while (answers-- > 0) {
                if (len + sizeof RESPONSE > sizeof out) {
                    if (write(c->fd, out, len) < 0) break;
                    len = 0;
                }
                memcpy(out + len, RESPONSE, sizeof RESPONSE - 1);
                len += sizeof RESPONSE - 1;
            }
            if (len && write(c->fd, out, len) < 0) { close(c->fd); free(c); }
        }
    }
}
