/* Load generator for tests/bench/bench_quorum.py.
 *
 * Why C: on a 2-core machine a Python client for 10,000 TLS sessions at 1 Hz needs more
 * CPU than the daemon it measures, so the figures would describe the load generator.
 * This one drives every session from one epoll loop with OpenSSL, so the daemon gets the
 * CPU and the latency measured is the daemon's.
 *
 * usage: quorum_loadgen PORT SERVER_CERT TARGETS LATENCIES_OUT VOTES_OUT [SLOTS]
 *   SLOTS: heartbeats go out in this many evenly spaced bursts per second (default 1000,
 *   about 10 heartbeats per millisecond at 10,000 sessions; bench_quorum.py passes 250):
 *   fewer slots mean bigger bursts, fewer wake-ups, less CPU, more queueing)
 *   TARGETS: one session per line, "cluster site cert key source-address"
 * stdin:  "go"                 start connecting (bounded handshakes in flight)
 *         "window START END"   CLOCK_MONOTONIC seconds; record latencies of heartbeats
 *                              sent inside; exit 1.5 s after END
 * stdout: "connected N ERRORS SECONDS" once every session is up (or failed)
 *         "done DROPPED CONNECT_ERRORS UNANSWERED MEASURED" at the end
 * LATENCIES_OUT: "latency-in-microseconds send-time-in-window" per line; VOTES_OUT: "cluster site granted
 * epoch" of the last vote of every session.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CONNECTING, HANDSHAKE, WELCOME, READY, DEAD };
static int SLOTS = 1000; /* heartbeat bursts per second; argv[6] overrides */
#define MAX_IN_FLIGHT 200
#define BUF 8192

typedef struct {
    char cluster[64], site[16], cert[512], key[512], source[32];
    int fd, stage, granted, epoch;
    SSL *ssl;
    long seq;
    double sent_at;
    int outstanding;
    unsigned char in[BUF];
    int in_len;
} conn_t;

static conn_t *conns;
static int nconns, in_flight, next_start, established, connect_errors, dropped;
static long unanswered;
static double win_start, win_end;
static int port;
static SSL_CTX *ctx;
static int ep;
static FILE *lat_out;
static long measured;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void ep_set(conn_t *c, unsigned events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, op, c->fd, &ev);
}

static void fail(conn_t *c) {
    if (c->stage == DEAD) return;
    if (c->stage == READY) dropped++;
    else { connect_errors++; in_flight--; }
    if (c->ssl) SSL_free(c->ssl);
    c->ssl = NULL;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->stage = DEAD;
}

static int send_frame(conn_t *c, const char *json) {
    unsigned char frame[512];
    int n = (int)strlen(json);
    frame[0] = 0; frame[1] = 0; frame[2] = (unsigned char)(n >> 8); frame[3] = (unsigned char)n;
    memcpy(frame + 4, json, n);
    int r = SSL_write(c->ssl, frame, n + 4);
    if (r <= 0) { fail(c); return -1; }  /* a full socket buffer means a broken daemon */
    return 0;
}

static void start_connections(void) {
    while (next_start < nconns && in_flight < MAX_IN_FLIGHT) {
        conn_t *c = &conns[next_start++];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in src = {.sin_family = AF_INET}, dst = {.sin_family = AF_INET};
        inet_pton(AF_INET, c->source, &src.sin_addr);
        inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
        dst.sin_port = htons(port);
        in_flight++;
        if (bind(c->fd, (void *)&src, sizeof src) < 0 ||
            (connect(c->fd, (void *)&dst, sizeof dst) < 0 && errno != EINPROGRESS)) {
            fail(c);
            continue;
        }
        c->stage = CONNECTING;
        ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
    }
}

static void on_message(conn_t *c, char *msg, double t) {
    if (strstr(msg, "\"type\":\"welcome\"") && c->stage == WELCOME) {
        c->stage = READY;
        in_flight--;
        established++;
        return;
    }
    if (!strstr(msg, "\"type\":\"vote\"")) {
        if (strstr(msg, "\"type\":\"error\"")) fail(c);
        return;
    }
    char *p = strstr(msg, "\"seq\":");
    long seq = p ? strtol(p + 6, NULL, 10) : -1;
    c->granted = strstr(msg, "\"granted\":true") != NULL;
    p = strstr(msg, "\"epoch\":");
    c->epoch = p ? (int)strtol(p + 8, NULL, 10) : -1;
    if (c->outstanding && seq == c->seq) {
        c->outstanding = 0;
        if (win_start > 0 && c->sent_at >= win_start && c->sent_at < win_end) {
            fprintf(lat_out, "%ld %.4f\n", (long)((t - c->sent_at) * 1e6), c->sent_at - win_start);
            measured++;
        }
    }
}

static void on_readable(conn_t *c) {
    for (;;) {
        int r = SSL_read(c->ssl, c->in + c->in_len, BUF - c->in_len);
        if (r <= 0) {
            int e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ) fail(c);
            return;
        }
        c->in_len += r;
        double t = now();
        int off = 0;
        while (c->in_len - off >= 4) {
            int n = (c->in[off] << 24) | (c->in[off + 1] << 16) | (c->in[off + 2] << 8) | c->in[off + 3];
            if (n <= 0 || n > BUF - 5) { fail(c); return; }
            if (c->in_len - off - 4 < n) break;
            char msg[BUF];
            memcpy(msg, c->in + off + 4, n);
            msg[n] = 0;
            off += 4 + n;
            on_message(c, msg, t);
            if (c->stage == DEAD) return;
        }
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

static void on_event(conn_t *c, unsigned events) {
    if (c->stage == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { fail(c); return; }
        c->ssl = SSL_new(ctx);
        if (SSL_use_certificate_file(c->ssl, c->cert, SSL_FILETYPE_PEM) != 1 ||
            SSL_use_PrivateKey_file(c->ssl, c->key, SSL_FILETYPE_PEM) != 1) {
            fail(c);
            return;
        }
        SSL_set_fd(c->ssl, c->fd);
        c->stage = HANDSHAKE;
    }
    if (c->stage == HANDSHAKE) {
        int r = SSL_connect(c->ssl);
        if (r != 1) {
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
            else if (e == SSL_ERROR_WANT_WRITE) ep_set(c, EPOLLOUT, EPOLL_CTL_MOD);
            else fail(c);
            return;
        }
        ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
        c->stage = WELCOME;
        char hello[256];
        snprintf(hello, sizeof hello,
                 "{\"type\":\"hello\",\"version\":1,\"cluster\":\"%s\",\"site\":\"%s\",\"node\":\"%s-n1\"}",
                 c->cluster, c->site, c->site);
        send_frame(c, hello);
        return;
    }
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
}

static void heartbeat_slot(int slot, double t) {
    for (int i = slot; i < nconns; i += SLOTS) {
        conn_t *c = &conns[i];
        if (c->stage != READY) continue;
        if (c->outstanding && win_start > 0 && c->sent_at >= win_start && c->sent_at < win_end)
            unanswered++;
        c->seq++;
        c->sent_at = t;
        c->outstanding = 1;
        char hb[128];
        snprintf(hb, sizeof hb, "{\"type\":\"heartbeat\",\"seq\":%ld,\"want\":true,\"nodes\":1}", c->seq);
        send_frame(c, hb);
    }
}

static int read_control(char *line, size_t size) {
    static char buf[512];
    static size_t len;
    ssize_t r = read(0, buf + len, sizeof buf - 1 - len);
    if (r > 0) len += (size_t)r;
    char *nl = memchr(buf, '\n', len);
    if (!nl) return 0;
    size_t n = (size_t)(nl - buf);
    if (n >= size) n = size - 1;
    memcpy(line, buf, n);
    line[n] = 0;
    len -= (size_t)(nl - buf) + 1;
    memmove(buf, nl + 1, len);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 6 && argc != 7) {
        fprintf(stderr, "usage: %s PORT SERVER_CERT TARGETS LAT_OUT VOTES_OUT [SLOTS]\n", argv[0]);
        return 2;
    }
    port = atoi(argv[1]);
    if (argc == 7) SLOTS = atoi(argv[6]);
    if (SLOTS < 1 || SLOTS > 10000) SLOTS = 1000;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_read_ahead(ctx, 1); /* one recv per burst of records, not two per record */
    if (SSL_CTX_load_verify_locations(ctx, argv[2], NULL) != 1) { ERR_print_errors_fp(stderr); return 1; }
    FILE *tf = fopen(argv[3], "r");
    if (!tf) { perror(argv[3]); return 1; }
    int cap = 1024;
    conns = calloc(cap, sizeof *conns);
    conn_t t;
    while (fscanf(tf, "%63s %15s %511s %511s %31s", t.cluster, t.site, t.cert, t.key, t.source) == 5) {
        if (nconns == cap) { cap *= 2; conns = realloc(conns, cap * sizeof *conns); }
        memset(&conns[nconns], 0, sizeof *conns);
        memcpy(conns[nconns].cluster, t.cluster, sizeof t.cluster);
        memcpy(conns[nconns].site, t.site, sizeof t.site);
        memcpy(conns[nconns].cert, t.cert, sizeof t.cert);
        memcpy(conns[nconns].key, t.key, sizeof t.key);
        memcpy(conns[nconns].source, t.source, sizeof t.source);
        conns[nconns].fd = -1;
        conns[nconns].stage = DEAD + 1; /* not started */
        nconns++;
    }
    fclose(tf);
    lat_out = fopen(argv[4], "w");
    ep = epoll_create1(0);
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    char line[256];
    int going = 0, reported = 0;
    double started = 0, base = 0, end_at = 0;
    long tick = 0;
    struct epoll_event evs[512];
    for (;;) {
        while (read_control(line, sizeof line)) {
            if (!strcmp(line, "go")) { going = 1; started = now(); base = started; }
            else if (sscanf(line, "window %lf %lf", &win_start, &win_end) == 2) end_at = win_end + 1.5;
        }
        double t = now();
        if (end_at > 0 && t > end_at) break;
        if (going) start_connections();
        if (going && !reported && next_start == nconns && in_flight == 0) {
            printf("connected %d %d %.3f\n", established, connect_errors, now() - started);
            fflush(stdout);
            reported = 1;
        }
        double next_tick = base + (tick + 1) * (1.0 / SLOTS);
        int timeout = going ? (int)((next_tick - t) * 1000) : 20;
        if (timeout < 0) timeout = 0;
        if (timeout > 20) timeout = 20;
        int n = epoll_wait(ep, evs, 512, timeout);
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events);
        t = now();
        while (going && base + (tick + 1) * (1.0 / SLOTS) <= t) {
            tick++;
            heartbeat_slot((int)(tick % SLOTS), t);
        }
    }
    fclose(lat_out);
    FILE *vf = fopen(argv[5], "w");
    for (int i = 0; i < nconns; i++)
        fprintf(vf, "%s %s %d %d\n", conns[i].cluster, conns[i].site,
                conns[i].stage == READY && conns[i].granted, conns[i].epoch);
    fclose(vf);
    printf("done %d %d %ld %ld\n", dropped, connect_errors, unanswered, measured);
    fflush(stdout);
    return 0;
}
