/* Exercises the C ABI from C: build a ring, place keys, check errors. Built and run by
 * ffi/tests/c_abi.rs (cargo test -p multiput-ffi). Exit status 0 means every check passed. */
#include "multiput.h"
#include <stdio.h>
#include <string.h>

static int failures = 0;
#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                               \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, "\n");                                                             \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)

int main(int argc, char **argv) {
    /* argv[1]: servers, then pairs of key and expected "host:port" */
    if (argc < 2) {
        fprintf(stderr, "usage: %s SERVERS [KEY EXPECTED]...\n", argv[0]);
        return 2;
    }
    MultiputRing *ring = NULL;
    int rc = multiput_ring_new(argv[1], NULL, &ring);
    CHECK(rc == MULTIPUT_OK, "ring_new: %d %s", rc, multiput_last_error());
    for (int i = 2; i + 1 < argc; i += 2) {
        size_t idx = 0;
        const char *addr = NULL;
        rc = multiput_ring_server_for(ring, argv[i], strlen(argv[i]), &idx, &addr);
        CHECK(rc == MULTIPUT_OK, "server_for(%s): %d %s", argv[i], rc, multiput_last_error());
        CHECK(addr && strcmp(addr, argv[i + 1]) == 0, "%s -> %s, expected %s", argv[i],
              addr ? addr : "(null)", argv[i + 1]);
    }
    size_t idx = 0;
    rc = multiput_ring_server_for(ring, "bad key", 7, &idx, NULL);
    CHECK(rc == MULTIPUT_E_KEY, "a key with a space must be refused, got %d", rc);
    CHECK(strstr(multiput_last_error(), "invalid key") != NULL, "message: %s", multiput_last_error());
    rc = multiput_ring_server_for(NULL, "k", 1, &idx, NULL);
    CHECK(rc == MULTIPUT_E_ARGUMENT, "NULL ring must be refused, got %d", rc);
    MultiputRing *bad = NULL;
    rc = multiput_ring_new("", NULL, &bad);
    CHECK(rc == MULTIPUT_E_CONFIG && bad == NULL, "empty server list must be refused, got %d", rc);
    rc = multiput_ring_new("a", "nonsense", &bad);
    CHECK(rc == MULTIPUT_E_CONFIG, "unknown mode must be refused, got %d", rc);
    multiput_ring_free(ring);
    multiput_ring_free(NULL);
    printf("%s: %d failures (library %s)\n", failures ? "FAILED" : "ok", failures, multiput_version());
    return failures ? 1 : 0;
}
