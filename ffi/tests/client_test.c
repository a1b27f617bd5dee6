/* Exercises the client half of the C ABI from C against real memcached servers: every call,
 * typed values, multi-key calls, CAS updates with a callback (from several threads at once),
 * locks, replication, and the error paths (null pointers, bad lengths, invalid UTF-8, bad
 * keys). Built and run by ffi/tests/c_abi.rs, which starts the servers and afterwards checks
 * what this program left on them with raw protocol reads.
 *
 * usage: client_test PLAIN_SERVER REPLICA_SERVERS(comma-separated, 3)
 * Output: one "ok ..." line per check group, then "ok: N checks, 0 failures". */
#include "multiput.h"
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0, checks = 0;
#define CHECK(cond, ...)                                                                       \
    do {                                                                                       \
        checks++;                                                                              \
        if (!(cond)) {                                                                         \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                               \
            fprintf(stderr, __VA_ARGS__);                                                      \
            fprintf(stderr, " [last error: %s]\n", multiput_last_error());                   \
            failures++;                                                                        \
        }                                                                                      \
    } while (0)
#define S(str) (str), strlen(str)

static int32_t set_str(MultiputClient *c, uint32_t mode, const char *k, const char *v) {
    return multiput_store(c, mode, S(k), MULTIPUT_TYPE_STRING, 0, S(v), 0, 0);
}

static void be_double(double d, char out[8]) {
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++) out[i] = (char)(u >> (56 - 8 * i));
}

/* ---- cas_update callback: append ",x" to a string, or create "x" ---- */
static int32_t append_x(void *ctx, const MultiputItem *cur, MultiputUpdate *up) {
    char *scratch = ctx;
    if (cur == NULL) {
        strcpy(scratch, "x");
    } else {
        size_t n = cur->data_len < 900 ? cur->data_len : 900;
        memcpy(scratch, cur->data, n);
        memcpy(scratch + n, ",x", 3);
    }
    up->action = MULTIPUT_UPDATE_SET;
    up->value_type = MULTIPUT_TYPE_STRING;
    up->data = scratch;
    up->data_len = strlen(scratch);
    return 0;
}

/* ---- cas_update callback: integer counter (typed int) ---- */
static int32_t add_one(void *ctx, const MultiputItem *cur, MultiputUpdate *up) {
    char *scratch = ctx;
    long long n = 0;
    if (cur != NULL) {
        if (cur->value_type != MULTIPUT_TYPE_INT) return 7;
        n = cur->int_value;
    }
    snprintf(scratch, 32, "%lld", n + 1);
    up->action = MULTIPUT_UPDATE_SET;
    up->value_type = MULTIPUT_TYPE_INT;
    up->data = scratch;
    up->data_len = strlen(scratch);
    return 0;
}

static int32_t abort_cb(void *ctx, const MultiputItem *cur, MultiputUpdate *up) {
    (void)ctx; (void)cur; (void)up;
    return 42;
}

static int32_t delete_cb(void *ctx, const MultiputItem *cur, MultiputUpdate *up) {
    (void)ctx; (void)cur;
    up->action = MULTIPUT_UPDATE_DELETE;
    return 0;
}

static int loads = 0;
static int32_t loader(void *ctx, MultiputUpdate *v) {
    (void)ctx;
    loads++;
    v->value_type = MULTIPUT_TYPE_STRING;
    v->data = "loaded";
    v->data_len = 6;
    return 0;
}

static int32_t failing_loader(void *ctx, MultiputUpdate *v) {
    (void)ctx; (void)v;
    return 3;
}

struct worker { MultiputClient *c; const char *key; int n; int errors; };

static void *counter_worker(void *arg) {
    struct worker *w = arg;
    char scratch[32];
    for (int i = 0; i < w->n; i++) {
        int32_t outcome = -1;
        uint32_t attempts = 0;
        if (multiput_cas_update(w->c, S(w->key), 0, add_one, scratch, &outcome, &attempts) != MULTIPUT_OK ||
            outcome != MULTIPUT_UPDATE_SET)
            w->errors++;
    }
    return NULL;
}

static long long get_int(MultiputClient *c, const char *k) {
    MultiputItem *it = NULL;
    if (multiput_get(c, S(k), 0, &it) != MULTIPUT_OK || it == NULL) return -1;
    long long v = it->value_type == MULTIPUT_TYPE_INT ? it->int_value : -2;
    multiput_item_free(it);
    return v;
}

static void concurrent_counter(MultiputClient *c, const char *key, const char *label) {
    multiput_delete(c, S(key));
    pthread_t t[4];
    struct worker w[4];
    for (int i = 0; i < 4; i++) {
        w[i] = (struct worker){c, key, 25, 0};
        pthread_create(&t[i], NULL, counter_worker, &w[i]);
    }
    int errors = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        errors += w[i].errors;
    }
    CHECK(errors == 0, "%s: %d cas_update calls failed", label, errors);
    long long v = get_int(c, key);
    CHECK(v == 100, "%s: 4 threads x 25 cas_update increments ended at %lld, not 100", label, v);
    printf("ok %s: 4 threads x 25 CAS updates = %lld\n", label, v);
}

static void typed_round_trips(MultiputClient *c, const char *label) {
    char f8[8];
    be_double(2.5, f8);
    MultiputItem *it = NULL;
    CHECK(multiput_store(c, MULTIPUT_SET, S("c:int"), MULTIPUT_TYPE_INT, 0, S("-42"), 0, 0) == 0, "set int");
    CHECK(multiput_store(c, MULTIPUT_SET, S("c:float"), MULTIPUT_TYPE_FLOAT, 0, f8, 8, 0, 0) == 0, "set float");
    CHECK(multiput_store(c, MULTIPUT_SET, S("c:bool"), MULTIPUT_TYPE_BOOL, 0, "\1", 1, 0, 0) == 0, "set bool");
    CHECK(multiput_store(c, MULTIPUT_SET, S("c:text"), MULTIPUT_TYPE_TEXT, 0, S("h\xc3\xa9llo"), 0, 0) == 0, "set text");
    CHECK(multiput_store(c, MULTIPUT_SET, S("c:bin"), MULTIPUT_TYPE_BYTES, 0, "\0\xff\n", 3, 0, 0) == 0, "set bytes");
    CHECK(multiput_store(c, MULTIPUT_SET, S("c:ser"), MULTIPUT_TYPE_SERIALIZED, MULTIPUT_FORMAT_PHP_SERIALIZE,
                         S("a:1:{i:0;s:1:\"x\";}"), 0, 0) == 0, "set serialized");
    CHECK(multiput_get(c, S("c:int"), 0, &it) == 0 && it && it->value_type == MULTIPUT_TYPE_INT &&
          it->int_value == -42 && it->data_len == 3 && memcmp(it->data, "-42", 3) == 0, "get int");
    multiput_item_free(it);
    CHECK(multiput_get(c, S("c:float"), 0, &it) == 0 && it && it->value_type == MULTIPUT_TYPE_FLOAT &&
          it->float_value == 2.5, "get float");
    multiput_item_free(it);
    CHECK(multiput_get(c, S("c:bool"), 0, &it) == 0 && it && it->value_type == MULTIPUT_TYPE_BOOL &&
          it->int_value == 1, "get bool");
    multiput_item_free(it);
    CHECK(multiput_get(c, S("c:text"), 0, &it) == 0 && it && it->data_len == 6 &&
          memcmp(it->data, "h\xc3\xa9llo", 6) == 0, "get text");
    multiput_item_free(it);
    CHECK(multiput_get(c, S("c:bin"), 0, &it) == 0 && it && it->value_type == MULTIPUT_TYPE_BYTES &&
          it->data_len == 3 && memcmp(it->data, "\0\xff\n", 3) == 0, "get bytes");
    multiput_item_free(it);
    CHECK(multiput_get(c, S("c:ser"), 0, &it) == 0 && it && it->value_type == MULTIPUT_TYPE_SERIALIZED &&
          it->format == MULTIPUT_FORMAT_PHP_SERIALIZE, "get serialized");
    multiput_item_free(it);
    it = (MultiputItem *)1;
    CHECK(multiput_get(c, S("c:missing"), 0, &it) == 0 && it == NULL, "a miss is OK with a null item");
    printf("ok %s: typed values round-trip\n", label);
}

static void conditional_stores(MultiputClient *c, const char *label) {
    MultiputItem *it = NULL;
    multiput_delete(c, S("c:cond"));
    CHECK(set_str(c, MULTIPUT_REPLACE, "c:cond", "r") == MULTIPUT_E_NOT_STORED, "replace of a missing key");
    CHECK(set_str(c, MULTIPUT_APPEND, "c:cond", "r") == MULTIPUT_E_NOT_STORED, "append to a missing key");
    CHECK(set_str(c, MULTIPUT_ADD, "c:cond", "b") == 0, "add of a missing key");
    CHECK(set_str(c, MULTIPUT_ADD, "c:cond", "x") == MULTIPUT_E_NOT_STORED, "add of an existing key");
    CHECK(multiput_pecl_result(MULTIPUT_E_NOT_STORED) == 14, "RES_NOTSTORED is 14");
    CHECK(set_str(c, MULTIPUT_APPEND, "c:cond", "c") == 0, "append");
    CHECK(set_str(c, MULTIPUT_PREPEND, "c:cond", "a") == 0, "prepend");
    CHECK(multiput_get(c, S("c:cond"), MULTIPUT_GET_CAS, &it) == 0 && it && it->data_len == 3 &&
          memcmp(it->data, "abc", 3) == 0 && it->cas != 0, "append and prepend give abc");
    uint64_t cas = it ? it->cas : 0;
    multiput_item_free(it);
    CHECK(multiput_cas(c, S("c:cond"), MULTIPUT_TYPE_STRING, 0, S("cas1"), 0, 0, cas) == 0, "cas with the current unique");
    CHECK(multiput_cas(c, S("c:cond"), MULTIPUT_TYPE_STRING, 0, S("cas2"), 0, 0, cas) == MULTIPUT_E_EXISTS,
          "cas with a stale unique");
    CHECK(multiput_last_error_pecl() == 12, "stale cas is RES_DATA_EXISTS (12), got %d", multiput_last_error_pecl());
    CHECK(set_str(c, MULTIPUT_REPLACE, "c:cond", "rep") == 0, "replace of an existing key");
    CHECK(multiput_touch(c, S("c:cond"), 100) == 0, "touch");
    CHECK(multiput_touch(c, S("c:nothing"), 100) == MULTIPUT_E_NOT_FOUND, "touch of a missing key");
    CHECK(multiput_delete(c, S("c:cond")) == 0, "delete");
    CHECK(multiput_cas(c, S("c:cond"), MULTIPUT_TYPE_STRING, 0, S("x"), 0, 0, cas) == MULTIPUT_E_NOT_FOUND,
          "cas of a deleted key");
    /* counters */
    uint64_t v = 0;
    multiput_delete(c, S("c:ctr"));
    CHECK(multiput_incr(c, S("c:ctr"), 1, 0, 0, 0, 0, &v) == MULTIPUT_E_NOT_FOUND, "incr of a missing key");
    CHECK(multiput_incr(c, S("c:ctr"), 1, 0, 1, 10, 0, &v) == 0 && v == 10, "incr with initial creates 10, got %llu",
          (unsigned long long)v);
    CHECK(multiput_incr(c, S("c:ctr"), 5, 0, 1, 10, 0, &v) == 0 && v == 15, "incr by 5 gives 15");
    CHECK(multiput_incr(c, S("c:ctr"), 20, 1, 0, 0, 0, &v) == 0 && v == 0, "decr floors at 0");
    printf("ok %s: add/replace/append/prepend/cas/touch/delete/incr/decr\n", label);
}

static void multi_calls(MultiputClient *c, const char *label) {
    /* set_multi: records of u32 klen | u32 dlen | u8 type | u8 format | key | data */
    char buf[4096];
    size_t at = 0;
    char keys[2048];
    size_t kat = 0;
    for (int i = 0; i < 40; i++) {
        char k[32], d[32];
        snprintf(k, sizeof k, "c:m:%d", i);
        snprintf(d, sizeof d, "%d", i * 7);
        uint32_t kl = (uint32_t)strlen(k), dl = (uint32_t)strlen(d);
        for (int b = 0; b < 4; b++) buf[at++] = (char)(kl >> (8 * b));
        for (int b = 0; b < 4; b++) buf[at++] = (char)(dl >> (8 * b));
        buf[at++] = (i % 2) ? MULTIPUT_TYPE_INT : MULTIPUT_TYPE_STRING;
        buf[at++] = 0;
        memcpy(buf + at, k, kl); at += kl;
        memcpy(buf + at, d, dl); at += dl;
        memcpy(keys + kat, k, kl); kat += kl;
        keys[kat++] = '\n';
    }
    memcpy(keys + kat, "c:m:missing", 11); kat += 11;
    MultiputItems *res = NULL;
    CHECK(multiput_set_multi(c, buf, at, 0, 0, &res) == 0 && res && res->count == 40 && res->ok == 40,
          "set_multi of 40 items");
    multiput_items_free(res);
    res = NULL;
    CHECK(multiput_get_multi(c, keys, kat, '\n', 0, &res) == 0 && res, "get_multi");
    if (res) {
        CHECK(res->count == 41 && res->ok == 40 && res->not_found == 1 && res->errors == 0,
              "get_multi counts: %zu items %zu ok %zu missing", res->count, res->ok, res->not_found);
        int good = 0;
        for (size_t i = 0; i < res->count && i < 40; i++) {
            const MultiputItem *it = &res->items[i];
            char want[32];
            snprintf(want, sizeof want, "%d", (int)i * 7);
            int type_ok = (i % 2) ? (it->value_type == MULTIPUT_TYPE_INT && it->int_value == (int64_t)i * 7)
                                  : (it->value_type <= MULTIPUT_TYPE_TEXT);
            if (it->status == MULTIPUT_OK && type_ok && it->data_len == strlen(want) &&
                memcmp(it->data, want, it->data_len) == 0)
                good++;
        }
        CHECK(good == 40, "get_multi values in order and typed: %d of 40", good);
        CHECK(res->items[40].status == MULTIPUT_E_NOT_FOUND && res->items[40].key_len == 11, "the miss is last");
    }
    multiput_items_free(res);
    res = NULL;
    CHECK(multiput_delete_multi(c, keys, kat, '\n', &res) == 0 && res && res->ok >= 40,
          "delete_multi deleted 40");
    multiput_items_free(res);
    /* the PHP form of a multi-get */
    MultiputBuffer b;
    memset(&b, 0, sizeof b);
    set_str(c, MULTIPUT_SET, "c:p1", "v1");
    multiput_store(c, MULTIPUT_SET, S("c:p2"), MULTIPUT_TYPE_INT, 0, S("7"), 0, 0);
    CHECK(multiput_get_multi_php(c, S("c:p1\nc:p2\nc:p3"), '\n', 0, &b) == 0 && b.hits == 2 && b.misses == 1,
          "get_multi_php counts");
    const char *want = "a:2:{s:4:\"c:p1\";s:2:\"v1\";s:4:\"c:p2\";i:7;}";
    CHECK(b.len == strlen(want) && memcmp(b.data, want, b.len) == 0, "get_multi_php: %.*s", (int)b.len, b.data);
    CHECK(multiput_get_php(c, S("c:p2"), MULTIPUT_GET_EXTENDED, &b) == 0 && b.len > 0 &&
          memcmp(b.data, "a:3:{s:5:\"value\";i:7;s:3:\"cas\";i:", 33) == 0, "get_php extended: %.*s", (int)b.len, b.data);
    CHECK(multiput_get_php(c, S("c:p3"), 0, &b) == 0 && b.len == 0, "get_php miss is empty");
    multiput_buffer_free(&b);
    CHECK(b.data == NULL && b.len == 0, "buffer_free zeroes");
    printf("ok %s: set_multi/get_multi/delete_multi/get_multi_php\n", label);
}

static void recipes(MultiputClient *c, const char *label) {
    char scratch[1024];
    int32_t outcome = -1;
    uint32_t attempts = 0;
    multiput_delete(c, S("c:upd"));
    CHECK(multiput_cas_update(c, S("c:upd"), 0, append_x, scratch, &outcome, &attempts) == 0 &&
          outcome == MULTIPUT_UPDATE_SET && attempts == 1, "cas_update creates");
    CHECK(multiput_cas_update(c, S("c:upd"), 0, append_x, scratch, &outcome, &attempts) == 0, "cas_update updates");
    MultiputItem *it = NULL;
    CHECK(multiput_get(c, S("c:upd"), 0, &it) == 0 && it && it->data_len == 3 && memcmp(it->data, "x,x", 3) == 0,
          "cas_update result");
    multiput_item_free(it);
    CHECK(multiput_cas_update(c, S("c:upd"), 0, abort_cb, NULL, &outcome, NULL) == MULTIPUT_E_CALLBACK,
          "an aborting callback is MULTIPUT_E_CALLBACK");
    CHECK(multiput_cas_update(c, S("c:upd"), 0, delete_cb, NULL, &outcome, NULL) == 0 &&
          outcome == MULTIPUT_UPDATE_DELETE, "cas_update deletes");
    CHECK(multiput_cas_update(c, S("c:upd"), 0, NULL, NULL, NULL, NULL) == MULTIPUT_E_ARGUMENT, "null callback");
    concurrent_counter(c, "c:counter", label);
    /* typed int counter through multiput_incr on a replicated client is exact too */
    MultiputLock *l1 = NULL, *l2 = NULL;
    CHECK(multiput_lock(c, S("c:lock"), 10, 0, 1, &l1) == 0 && l1, "lock acquired");
    uint64_t fence = 0;
    CHECK(multiput_lock_fence(l1, &fence) == 1 && fence >= 1, "fencing token");
    CHECK(multiput_lock(c, S("c:lock"), 10, 50, 0, &l2) == MULTIPUT_E_LOCK_NOT_ACQUIRED && l2 == NULL,
          "a held lock is not acquired twice");
    CHECK(multiput_last_error_pecl() == 14, "lock not acquired maps to RES_NOTSTORED");
    int32_t held = 0, released = 0;
    CHECK(multiput_lock_extend(l1, 20, &held) == 0 && held == 1, "extend");
    CHECK(multiput_lock_token(l1) && strlen(multiput_lock_token(l1)) > 0, "token");
    CHECK(multiput_lock_release(l1, &released) == 0 && released == 1 && !multiput_lock_is_held(l1), "release");
    CHECK(multiput_lock_release(l1, &released) == 0 && released == 0, "second release is a no-op");
    multiput_lock_free(l1);
    CHECK(multiput_lock(c, S("c:lock"), 10, 0, 0, &l2) == 0 && l2, "lock again after release");
    multiput_lock_free(l2); /* releases */
    CHECK(multiput_lock(c, S("c:lock"), 10, 0, 0, &l2) == 0 && l2, "freeing a held lock released it");
    multiput_lock_free(l2);
    CHECK(multiput_lock(c, S("c:lock"), 0, 0, 0, &l2) == MULTIPUT_E_CONFIG, "a lock needs a TTL");
    /* the core says which keys can be sent, before anything is sent */
    CHECK(multiput_check_key(c, S("fine:key")) == 0, "a printable key is sendable");
    CHECK(multiput_check_key(c, S("a b")) == MULTIPUT_E_KEY, "a key with a space is not (no binary keys)");
    CHECK(multiput_check_key(c, S("")) == MULTIPUT_E_KEY, "an empty key is not");
    /* a quorum lock: a majority of the name's first server(s) */
    MultiputLock *q1 = NULL, *q2 = NULL;
    CHECK(multiput_lock_quorum(c, S("c:qlock"), 10, 0, 0, 1, &q1) == 0 && q1, "quorum lock acquired");
    CHECK(multiput_lock_quorum(c, S("c:qlock"), 10, 0, 0, 1, &q2) == MULTIPUT_E_LOCK_NOT_ACQUIRED && q2 == NULL,
          "a held quorum lock is not acquired twice");
    CHECK(multiput_lock_quorum(c, S("c:qlock"), 10, 0, 0, 9, &q2) == MULTIPUT_E_CONFIG, "quorum above the server count");
    multiput_lock_free(q1);
    CHECK(multiput_lock_quorum(c, S("c:qlock"), 10, 0, 0, 1, &q2) == 0 && q2, "freed: acquired again");
    multiput_lock_free(q2);
    /* get_or_set: one load, then hits; the same fill plain and replicated */
    MultiputItem *g = NULL;
    multiput_delete(c, S("c:fill"));
    multiput_delete(c, S("c:fill2"));
    loads = 0;
    int32_t rc = multiput_get_or_set(c, S("c:fill"), 60, loader, NULL, &g);
    CHECK(rc == 0 && g && g->data_len == 6 && memcmp(g->data, "loaded", 6) == 0 && loads == 1, "get_or_set loads");
    multiput_item_free(g);
    g = NULL;
    CHECK(multiput_get_or_set(c, S("c:fill"), 60, loader, NULL, &g) == 0 && g && loads == 1, "then hits");
    multiput_item_free(g);
    g = NULL;
    CHECK(multiput_get_or_set(c, S("c:fill2"), 60, failing_loader, NULL, &g) == MULTIPUT_E_CALLBACK && g == NULL,
          "a failing loader stores nothing");
    printf("ok %s: cas_update (callback, abort, delete, threads), locks, get_or_set\n", label);
}

static void server_calls(MultiputClient *c, const char *label) {
    MultiputBuffer b;
    memset(&b, 0, sizeof b);
    CHECK(multiput_stats(c, NULL, &b) == 0 && b.errors == 0 && b.len > 0 && strstr((char *)b.data, "\tpid\t"),
          "stats");
    CHECK(multiput_server_versions(c, &b) == 0 && b.errors == 0 && strstr((char *)b.data, "\t1.6"), "versions");
    CHECK(multiput_metrics(c, &b) == 0 && strstr((char *)b.data, "total\t"), "metrics");
    multiput_buffer_free(&b);
    size_t n = multiput_client_server_count(c);
    CHECK(n >= 1 && multiput_client_server_address(c, 0) != NULL && multiput_client_server_address(c, n) == NULL,
          "server addresses");
    size_t idx[4] = {99, 99, 99, 99}, count = 0;
    CHECK(multiput_client_servers_for(c, S("c:int"), idx, 4, &count) == 0 && count >= 1 && idx[0] < n,
          "servers_for");
    printf("ok %s: stats/versions/metrics/servers_for\n", label);
}

static void bad_arguments(MultiputClient *c) {
    MultiputItem *it = NULL;
    CHECK(multiput_get(NULL, S("k"), 0, &it) == MULTIPUT_E_ARGUMENT, "null client");
    CHECK(multiput_get(c, NULL, 3, 0, &it) == MULTIPUT_E_ARGUMENT, "null key with a length");
    CHECK(multiput_get(c, S("k"), 0, NULL) == MULTIPUT_E_ARGUMENT, "null out");
    CHECK(multiput_get(c, "k", (size_t)1 << 40, 0, &it) == MULTIPUT_E_KEY, "absurd key length");
    CHECK(multiput_store(c, MULTIPUT_SET, S("k"), 0, 0, "x", (size_t)1 << 40, 0, 0) == MULTIPUT_E_ARGUMENT,
          "absurd data length");
    CHECK(multiput_get(c, S("bad key"), 0, &it) == MULTIPUT_E_KEY, "key with a space");
    CHECK(multiput_last_error_pecl() == 33, "bad key is RES_BAD_KEY_PROVIDED (33)");
    CHECK(multiput_get(c, "", 0, 0, &it) == MULTIPUT_E_KEY, "empty key");
    char long_key[300];
    memset(long_key, 'k', sizeof long_key);
    CHECK(multiput_store(c, MULTIPUT_SET, long_key, 300, 0, 0, "v", 1, 0, 0) == MULTIPUT_E_KEY, "300-byte key");
    CHECK(multiput_store(c, MULTIPUT_SET, S("k"), MULTIPUT_TYPE_TEXT, 0, "\xff\xfe", 2, 0, 0) == MULTIPUT_E_ARGUMENT,
          "text that is not UTF-8");
    CHECK(multiput_store(c, MULTIPUT_SET, S("k"), MULTIPUT_TYPE_INT, 0, S("12abc"), 0, 0) == MULTIPUT_E_ARGUMENT,
          "an int that is not decimal");
    CHECK(multiput_store(c, MULTIPUT_SET, S("k"), 77, 0, S("x"), 0, 0) == MULTIPUT_E_ARGUMENT, "unknown type");
    CHECK(multiput_store(c, 99, S("k"), 0, 0, S("x"), 0, 0) == MULTIPUT_E_ARGUMENT, "unknown store mode");
    static char big[2 * 1024 * 1024];
    uint64_t r = 0x9e3779b97f4a7c15ull; /* incompressible, so compression cannot shrink it */
    for (size_t i = 0; i < sizeof big; i++) {
        r ^= r << 13; r ^= r >> 7; r ^= r << 17;
        big[i] = (char)(r >> 24);
    }
    CHECK(multiput_store(c, MULTIPUT_SET, S("k"), 0, 0, big, sizeof big, 0, 0) == MULTIPUT_E_VALUE_TOO_LARGE,
          "2 MiB value");
    CHECK(multiput_last_error_pecl() == 37, "too large is RES_E2BIG (37)");
    CHECK(multiput_set_multi(c, "\5\0\0", 3, 0, 0, NULL) == MULTIPUT_E_ARGUMENT, "truncated set_multi record");
    CHECK(multiput_get_multi_php(c, S("a"), '\n', 0, NULL) == MULTIPUT_E_ARGUMENT, "null buffer");
    MultiputClient *x = NULL;
    CHECK(multiput_client_open("servers=127.0.0.1:1;bogus=1", &x) == MULTIPUT_E_CONFIG && x == NULL,
          "unknown option");
    CHECK(strstr(multiput_last_error(), "bogus") != NULL, "the message names the option");
    CHECK(multiput_client_open("servers=", &x) == MULTIPUT_E_CONFIG, "no servers");
    CHECK(multiput_client_open("servers=a:b:c:d", &x) == MULTIPUT_E_CONFIG, "bad server");
    CHECK(multiput_client_open("servers=a;replicas=3", &x) == MULTIPUT_E_CONFIG, "more replicas than servers");
    CHECK(multiput_client_open(NULL, &x) == MULTIPUT_E_ARGUMENT, "null options");
    CHECK(multiput_client_open("servers=\xff", &x) == MULTIPUT_E_ARGUMENT, "options not UTF-8");
    MultiputConfig *cfg = NULL;
    CHECK(multiput_config_new(&cfg) == 0 && cfg, "config_new");
    CHECK(multiput_config_set(cfg, "timeout_ms", "soon") == MULTIPUT_E_CONFIG, "bad number");
    CHECK(multiput_config_set(cfg, NULL, "1") == MULTIPUT_E_ARGUMENT, "null name");
    CHECK(multiput_config_set(NULL, "a", "1") == MULTIPUT_E_ARGUMENT, "null config");
    multiput_config_free(cfg);
    multiput_client_free(NULL);
    multiput_item_free(NULL);
    multiput_items_free(NULL);
    multiput_buffer_free(NULL);
    multiput_lock_free(NULL);
    /* a server that is not there: refused, then marked down */
    CHECK(multiput_client_open("servers=127.0.0.1:1;timeout_ms=200", &x) == 0 && x, "client for a dead server");
    CHECK(multiput_get(x, S("k"), 0, &it) == MULTIPUT_E_CONNECTION_REFUSED, "refused");
    CHECK(multiput_get(x, S("k"), 0, &it) == MULTIPUT_E_SERVER_DOWN, "then marked down");
    CHECK(multiput_last_error_pecl() == 47, "marked down is RES_SERVER_TEMPORARILY_DISABLED (47), as PECL reports it");
    multiput_client_free(x);
    printf("ok errors: null pointers, bad lengths, invalid UTF-8, bad keys, bad options, dead server\n");
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PLAIN_SERVER REPLICA_SERVERS\n", argv[0]);
        return 2;
    }
    char opts[512];
    MultiputClient *plain = NULL, *repl = NULL;

    /* plain mode, configured through the builder */
    MultiputConfig *cfg = NULL;
    CHECK(multiput_config_new(&cfg) == 0, "config_new");
    CHECK(multiput_config_set(cfg, "servers", argv[1]) == 0, "servers");
    CHECK(multiput_config_set(cfg, "compress_threshold", "2000") == 0, "compress_threshold");
    CHECK(multiput_client_new(cfg, &plain) == 0 && plain, "client_new");
    /* persistent handles: same id and config share one client; each handle is freed alone */
    MultiputClient *p1 = NULL, *p2 = NULL;
    CHECK(multiput_client_new_persistent("pool", cfg, &p1) == 0 && p1, "persistent client");
    CHECK(set_str(p1, MULTIPUT_SET, "c:persist", "kept") == 0, "set through a persistent handle");
    multiput_client_free(p1);
    CHECK(multiput_client_new_persistent("pool", cfg, &p2) == 0 && p2, "persistent client again");
    MultiputItem *pit = NULL;
    CHECK(multiput_get(p2, S("c:persist"), 0, &pit) == 0 && pit && pit->data_len == 4, "read through it");
    multiput_item_free(pit);
    multiput_client_free(p2);
    CHECK(multiput_client_new_persistent(NULL, cfg, &p2) == MULTIPUT_E_ARGUMENT, "null persistent id");
    multiput_config_free(cfg);
    CHECK(multiput_client_replicas(plain) == 0, "plain client has no replicas");
    typed_round_trips(plain, "plain");
    conditional_stores(plain, "plain");
    multi_calls(plain, "plain");
    recipes(plain, "plain");
    server_calls(plain, "plain");
    bad_arguments(plain);
    /* leave values for the Rust side to inspect */
    multiput_store(plain, MULTIPUT_SET, S("left:int"), MULTIPUT_TYPE_INT, 0, S("42"), 0, 0);
    static char big[5000];
    memset(big, 'z', sizeof big);
    multiput_store(plain, MULTIPUT_SET, S("left:big"), MULTIPUT_TYPE_STRING, 0, big, sizeof big, 0, 0);

    /* replicated mode: 3 servers, 2 copies */
    snprintf(opts, sizeof opts, "servers=%s;replicas=2;timeout_ms=500", argv[2]);
    CHECK(multiput_client_open(opts, &repl) == 0 && repl, "replicated client: %s", opts);
    CHECK(multiput_client_replicas(repl) == 2, "2 replicas");
    typed_round_trips(repl, "replicated");
    size_t stored = 0, failed = 9;
    multiput_last_write(&stored, &failed);
    CHECK(stored == 2 && failed == 0, "last write stored on 2, failed on 0");
    conditional_stores(repl, "replicated");
    multi_calls(repl, "replicated");
    recipes(repl, "replicated");
    server_calls(repl, "replicated");
    size_t idx[3], count = 0;
    CHECK(multiput_client_servers_for(repl, S("left:repl"), idx, 3, &count) == 0 && count == 2 && idx[0] != idx[1],
          "two distinct replicas");
    multiput_store(repl, MULTIPUT_SET, S("left:repl"), MULTIPUT_TYPE_TEXT, 0, S("copy"), 0, 0);
    printf("left:repl on %s and %s\n", multiput_client_server_address(repl, idx[0]),
           multiput_client_server_address(repl, idx[1]));

    /* per-call policies: a second handle on the same client */
    MultiputClient *first = NULL, *bad = NULL;
    MultiputItem *it = NULL;
    CHECK(multiput_client_with_policies(repl, "first_hit", NULL, &first) == 0 && first, "with_policies");
    CHECK(multiput_get(first, S("left:repl"), 0, &it) == 0 && it && it->data_len == 4, "first-hit view reads");
    multiput_item_free(it);
    it = NULL;
    CHECK(multiput_client_with_policies(repl, "quorum:3", NULL, &bad) == MULTIPUT_E_CONFIG && bad == NULL,
          "a read quorum above 2 replicas is refused");
    CHECK(multiput_client_with_policies(repl, NULL, "sometimes", &bad) == MULTIPUT_E_CONFIG, "bad write policy");
    CHECK(multiput_client_with_policies(plain, "all", NULL, &bad) == MULTIPUT_E_UNSUPPORTED, "plain clients have no policy");
    CHECK(multiput_client_with_policies(NULL, NULL, NULL, &bad) == MULTIPUT_E_ARGUMENT, "null client");
    multiput_client_free(first);

    multiput_client_free(plain);
    multiput_client_free(repl);
    printf("%s: %d checks, %d failures (library %s)\n", failures ? "FAILED" : "ok", checks, failures,
           multiput_version());
    return failures ? 1 : 0;
}
