/* A client that made calls, then fork(): every child must read its own answers, never the
 * replies meant for another process sharing an inherited socket (DESIGN lesson 8), and the
 * parent must keep working. Built and run by ffi/tests/c_abi.rs against real memcached.
 *
 * usage: fork_test SERVERS(comma-separated) REPLICAS
 * Stores 3,000 keys with distinct known values, reads some (so connections are open), forks
 * 4 children that each read all 3,000 keys (each from another starting point, all at once),
 * and counts wrong values and errors reported by the children through a pipe; then the
 * parent reads and writes again. Output: "ok: children 4, reads N, wrong 0, errors 0, parent
 * ok" and exit 0, or FAIL lines and exit 1. Every wait is bounded (children: alarm). */
#define _POSIX_C_SOURCE 200809L
#include "multiput.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define KEYS 3000
#define CHILDREN 4

static void key_of(int i, char *out, size_t n) { snprintf(out, n, "fork:c:%d", i); }
static void value_of(int i, char *out, size_t n) {
    /* distinct lengths too, so a reply meant for another key cannot pass by accident */
    snprintf(out, n, "value-%d-%.*s", i, i % 37, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
}

/* 0 = right value, 1 = wrong value or miss, 2 = error */
static int check(MultiputClient *c, int i) {
    char k[64], v[128];
    key_of(i, k, sizeof k);
    value_of(i, v, sizeof v);
    MultiputItem *it = NULL;
    if (multiput_get(c, k, strlen(k), 0, &it) != MULTIPUT_OK) return 2;
    int bad = it == NULL || it->data_len != strlen(v) || memcmp(it->data, v, it->data_len) != 0;
    if (it) multiput_item_free(it);
    return bad;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s SERVERS REPLICAS\n", argv[0]);
        return 2;
    }
    char opts[1024];
    snprintf(opts, sizeof opts, "servers=%s;replicas=%s;timeout_ms=2000", argv[1], argv[2]);
    MultiputClient *c = NULL;
    if (multiput_client_open(opts, &c) != MULTIPUT_OK) {
        fprintf(stderr, "FAIL open: %s\n", multiput_last_error());
        return 1;
    }
    for (int i = 0; i < KEYS; i++) {
        char k[64], v[128];
        key_of(i, k, sizeof k);
        value_of(i, v, sizeof v);
        if (multiput_store(c, MULTIPUT_SET, k, strlen(k), MULTIPUT_TYPE_STRING, 0, v, strlen(v), 0, 0) != MULTIPUT_OK) {
            fprintf(stderr, "FAIL set %s: %s\n", k, multiput_last_error());
            return 1;
        }
    }
    for (int i = 0; i < 100; i++) {
        if (check(c, i) != 0) {
            fprintf(stderr, "FAIL parent read before fork: %s\n", multiput_last_error());
            return 1;
        }
    }

    int pipefd[2];
    if (pipe(pipefd) != 0) return 1;
    pid_t pids[CHILDREN];
    for (int n = 0; n < CHILDREN; n++) {
        pids[n] = fork();
        if (pids[n] < 0) {
            perror("fork");
            return 1;
        }
        if (pids[n] == 0) {
            alarm(120); /* bounded: a hung child dies */
            close(pipefd[0]);
            int wrong = 0, errors = 0;
            for (int j = 0; j < KEYS; j++) {
                int r = check(c, (j + n * (KEYS / CHILDREN)) % KEYS);
                wrong += r == 1;
                errors += r == 2;
            }
            char line[64];
            int len = snprintf(line, sizeof line, "%d %d %d\n", n, wrong, errors);
            if (write(pipefd[1], line, (size_t)len) != len) _exit(3);
            _exit(0);
        }
    }
    close(pipefd[1]);
    int wrong = 0, errors = 0, reports = 0, failed = 0;
    FILE *in = fdopen(pipefd[0], "r");
    int n, w, e;
    while (in && fscanf(in, "%d %d %d", &n, &w, &e) == 3) {
        reports++;
        wrong += w;
        errors += e;
        if (w || e) fprintf(stderr, "FAIL child %d: %d wrong values, %d errors\n", n, w, e);
    }
    for (int k = 0; k < CHILDREN; k++) {
        int status = 0;
        waitpid(pids[k], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "FAIL child %d ended with status %d\n", k, status);
            failed++;
        }
    }

    /* The parent's next calls still succeed, with the right values. */
    int parent_bad = 0;
    for (int i = 0; i < 300; i++) parent_bad += check(c, (i * 7) % KEYS) != 0;
    char v[32];
    snprintf(v, sizeof v, "after-%d", (int)getpid());
    if (multiput_store(c, MULTIPUT_SET, "fork:c:after", 12, MULTIPUT_TYPE_STRING, 0, v, strlen(v), 0, 0) != MULTIPUT_OK)
        parent_bad++;
    if (parent_bad) fprintf(stderr, "FAIL parent after fork: %d bad calls [%s]\n", parent_bad, multiput_last_error());
    multiput_client_free(c);

    printf("%s: children %d, reads %d, wrong %d, errors %d, parent %s\n",
           wrong || errors || failed || reports != CHILDREN || parent_bad ? "FAIL" : "ok", reports,
           reports * KEYS, wrong, errors, parent_bad ? "failed" : "ok");
    return wrong || errors || failed || reports != CHILDREN || parent_bad ? 1 : 0;
}
