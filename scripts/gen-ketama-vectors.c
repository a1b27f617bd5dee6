/*
 * Ketama placement vectors computed by libmemcached itself. Built and run by
 * scripts/gen-ketama-vectors.sh (read it first); usage: gen-ketama-vectors KEYS_DIR OUT_DIR.
 *
 * For every configuration below: a memcached_st with the mode's behaviors and the servers
 * added in list order (no server is contacted, nothing is resolved), then for every key of
 * the configuration's key list (KEYS_DIR/<keys>.keys, one UTF-8 key a line) the server
 * libmemcached picks. memcached_generate_hash() gives the server's index and
 * memcached_server_by_key() its name and port; the two must agree. Writes
 * OUT_DIR/<name>.json in the format of docs/vectors/ring/README.md.
 *
 * The parts of a description that depend on the ring come from libmemcached's own continuum
 * (struct memcached_st's ketama.continuum), not from a re-implementation:
 *   {points}  points per server, in list order;
 *   {tie}     the point value two servers share (the file's tie case);
 *   {moved}   how many keys moved compared with the configuration named in `previous`.
 * The continuum is libmemcached's internal array; its layout is checked below (sorted, valid
 * indices, and a lower-bound lookup on it gives memcached_generate_hash()'s answer for every
 * key) so a different layout stops the run instead of writing wrong descriptions.
 */
#include <libmemcached/memcached.h>

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libmemcached's src/libmemcached/continuum.hpp (not installed). */
struct memcached_continuum_item_st {
  uint32_t index;
  uint32_t value;
};

enum mode { LIBKETAMA_COMPATIBLE, KETAMA_MD5 };

struct server {
  const char *host;
  in_port_t port;
  uint32_t weight;
};

struct config {
  const char *name;     /* output file name without .json */
  const char *keys;     /* key list in KEYS_DIR, without .keys */
  enum mode mode;
  const char *previous; /* for {moved}: the configuration this one is compared with */
  const char *description;
  struct server servers[8];
};

#define LIBKETAMA_NOTE                                                                         \
  " mode libketama_compatible = libmemcached MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED=1 = "          \
  "php-memcached Memcached::OPT_LIBKETAMA_COMPATIBLE=true = pylibmc {'ketama_weighted': "      \
  "True}. Points per server: {points}."

static const struct config CONFIGS[] = {
    {"ketama_01_single_server", "01_single_server", LIBKETAMA_COMPATIBLE, NULL,
     "One server: every key maps to it (libmemcached skips hashing entirely)." LIBKETAMA_NOTE,
     {{"192.0.2.10", 11211, 1}}},
    {"ketama_02_three_servers_default_port", "02_three_servers_default_port",
     LIBKETAMA_COMPATIBLE, NULL,
     "Three IPs on the default port 11211, weight 0 as php-memcached's addServer() passes "
     "when no weight is given (libmemcached treats 0 as 1). Port 11211 is left out of the "
     "point strings: points hash '192.0.2.11-0' .. '192.0.2.11-39'." LIBKETAMA_NOTE,
     {{"192.0.2.11", 11211, 0}, {"192.0.2.12", 11211, 0}, {"192.0.2.13", 11211, 0}}},
    {"ketama_03_four_servers_custom_ports", "03_04_four_servers", LIBKETAMA_COMPATIBLE, NULL,
     "Four IPs on non-default ports: points hash 'host:port-i', e.g. "
     "'198.51.100.21:11212-0'." LIBKETAMA_NOTE,
     {{"198.51.100.21", 11212, 1},
      {"198.51.100.22", 11213, 1},
      {"198.51.100.23", 21211, 1},
      {"198.51.100.24", 11311, 1}}},
    {"ketama_04_four_servers_minus_one", "03_04_four_servers", LIBKETAMA_COMPATIBLE,
     "ketama_03_four_servers_custom_ports",
     "03_four_servers_custom_ports with 198.51.100.23:21211 removed; same 1000 keys, so the "
     "two files show exactly which keys move." LIBKETAMA_NOTE
     " Keys that moved compared with 03_four_servers_custom_ports: {moved}.",
     {{"198.51.100.21", 11212, 1}, {"198.51.100.22", 11213, 1}, {"198.51.100.24", 11311, 1}}},
    {"ketama_05_five_servers_weighted", "05_five_servers_weighted", LIBKETAMA_COMPATIBLE, NULL,
     "Unequal weights 4,8,5,1,7. The point counts must be computed in 32-bit float exactly "
     "as libmemcached does; that gives {points} points, where exact arithmetic would give "
     "128,256,160,32,224." LIBKETAMA_NOTE,
     {{"203.0.113.31", 11211, 4},
      {"203.0.113.32", 11211, 8},
      {"203.0.113.33", 11212, 5},
      {"203.0.113.34", 11211, 1},
      {"203.0.113.35", 11213, 7}}},
    {"ketama_06_ketama_md5_unweighted", "06_ketama_md5_unweighted", KETAMA_MD5, NULL,
     "The other, non-libketama consistent mode: 100 points per server, one point per MD5 "
     "digest (digest bytes 0..3 little-endian), weights ignored. mode ketama_md5 = "
     "libmemcached MEMCACHED_BEHAVIOR_KETAMA=1 with MEMCACHED_BEHAVIOR_HASH=MEMCACHED_HASH_MD5 "
     "(unweighted: 100 points per server) = pylibmc {'ketama': True, 'hash': 'md5'} = "
     "php-memcached OPT_DISTRIBUTION=DISTRIBUTION_CONSISTENT + OPT_HASH=HASH_MD5.",
     {{"192.0.2.41", 11211, 1},
      {"192.0.2.42", 11212, 1},
      {"mc-a.example.org", 11211, 1},
      {"mc-b.example.org", 21211, 1}}},
    {"ketama_07_tie_break", "07_tie_break", LIBKETAMA_COMPATIBLE, NULL,
     "'cache-539.example.net-*' and 'cache-305.example.net-*' produce the same point value "
     "{tie}. Equal points sort by the server's position in the list, so the earlier-listed "
     "server (cache-539, listed first) owns the keys in that point's interval. About 250 keys "
     "were chosen to land in that interval." LIBKETAMA_NOTE,
     {{"cache-539.example.net", 11211, 1},
      {"cache-305.example.net", 11211, 1},
      {"cache-1.example.net", 11211, 1}}},
};

#define NCONFIGS (sizeof CONFIGS / sizeof CONFIGS[0])

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("gen-ketama-vectors: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static size_t server_count(const struct config *c) {
  size_t n = 0;
  while (n < sizeof c->servers / sizeof c->servers[0] && c->servers[n].host) n++;
  return n;
}

/* ---- growable string ---- */

struct buf {
  char *p;
  size_t len, cap;
};

static void put(struct buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->p = realloc(b->p, b->cap);
    if (!b->p) die("out of memory");
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void puts_(struct buf *b, const char *s) { put(b, s, strlen(s)); }

static void putf(struct buf *b, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp) die("putf overflow");
  put(b, tmp, (size_t)n);
}

/* A JSON string: '"' and '\' escaped, control characters as \u00XX, everything else (UTF-8
 * included) as is. */
static void put_json(struct buf *b, const char *s) {
  put(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') {
      put(b, "\\", 1);
      put(b, (const char *)c, 1);
    } else if (*c < 0x20) {
      putf(b, "\\u%04x", *c);
    } else {
      put(b, (const char *)c, 1);
    }
  }
  put(b, "\"", 1);
}

/* ---- keys ---- */

struct keys {
  char **k;
  size_t n;
};

static struct keys read_keys(const char *dir, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.keys", dir, name);
  FILE *f = fopen(path, "rb");
  if (!f) die("%s: %s", path, strerror(errno));
  struct keys ks = {NULL, 0};
  size_t cap = 0;
  char *line = NULL;
  size_t lcap = 0;
  ssize_t len;
  while ((len = getline(&line, &lcap, f)) > 0) {
    if (line[len - 1] != '\n') die("%s: last line has no newline", path);
    line[--len] = '\0';
    if (len < 1 || len > MEMCACHED_MAX_KEY - 1) die("%s: key of %zd bytes", path, len);
    for (ssize_t i = 0; i < len; i++)
      if ((unsigned char)line[i] <= ' ' || line[i] == 0x7f)
        die("%s: key %zu has a space or control character", path, ks.n + 1);
    if (ks.n == cap) {
      cap = cap ? cap * 2 : 1024;
      ks.k = realloc(ks.k, cap * sizeof *ks.k);
      if (!ks.k) die("out of memory");
    }
    ks.k[ks.n++] = strdup(line);
  }
  free(line);
  fclose(f);
  if (ks.n == 0) die("%s: no keys", path);
  return ks;
}

/* ---- libmemcached ---- */

static memcached_st *make_ring(const struct config *c) {
  memcached_st *memc = memcached_create(NULL);
  if (!memc) die("memcached_create failed");
  /* The mode's behaviors first, then the servers in list order (as php-memcached does when
   * the option is set before addServer()). */
  if (c->mode == LIBKETAMA_COMPATIBLE) {
    if (memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED, 1) != MEMCACHED_SUCCESS)
      die("%s: MEMCACHED_BEHAVIOR_KETAMA_WEIGHTED", c->name);
  } else {
    if (memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_KETAMA, 1) != MEMCACHED_SUCCESS
        || memcached_behavior_set(memc, MEMCACHED_BEHAVIOR_HASH, MEMCACHED_HASH_MD5)
            != MEMCACHED_SUCCESS)
      die("%s: MEMCACHED_BEHAVIOR_KETAMA + HASH_MD5", c->name);
  }
  for (size_t i = 0; i < server_count(c); i++) {
    const struct server *s = &c->servers[i];
    memcached_return_t rc = memcached_server_add_with_weight(memc, s->host, s->port, s->weight);
    if (rc != MEMCACHED_SUCCESS)
      die("%s: adding %s:%u: %s", c->name, s->host, s->port, memcached_strerror(memc, rc));
  }
  if (memcached_server_count(memc) != server_count(c)) die("%s: server count", c->name);
  return memc;
}

/* The continuum, checked to be what this program assumes it is. */
static const struct memcached_continuum_item_st *continuum(const memcached_st *memc,
                                                           const struct config *c,
                                                           uint32_t *count) {
  const struct memcached_continuum_item_st *ct = memc->ketama.continuum;
  uint32_t n = memc->ketama.continuum_points_counter;
  if (!ct || n == 0 || n > memc->ketama.continuum_count) die("%s: no continuum", c->name);
  for (uint32_t i = 0; i < n; i++) {
    if (ct[i].index >= server_count(c)) die("%s: continuum index out of range", c->name);
    if (i > 0
        && (ct[i - 1].value > ct[i].value
            || (ct[i - 1].value == ct[i].value && ct[i - 1].index > ct[i].index)))
      die("%s: continuum not sorted by (value, index)", c->name);
  }
  *count = n;
  return ct;
}

static uint32_t key_hash(const struct config *c, const char *key) {
  (void)c; /* both modes hash keys with MD5 */
  return memcached_generate_hash_value(key, strlen(key), MEMCACHED_HASH_MD5);
}

/* Lower bound with wrap-around on the continuum: the position of the key's point. */
static uint32_t lower_bound(const struct memcached_continuum_item_st *ct, uint32_t n,
                            uint32_t h) {
  uint32_t lo = 0, hi = n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    if (ct[mid].value < h)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo == n ? 0 : lo;
}

/* Index of the server libmemcached picks for every key, checked two ways. */
static uint32_t *place(memcached_st *memc, const struct config *c, const struct keys *ks) {
  uint32_t *idx = calloc(ks->n, sizeof *idx);
  if (!idx) die("out of memory");
  uint32_t n;
  const struct memcached_continuum_item_st *ct = continuum(memc, c, &n);
  for (size_t i = 0; i < ks->n; i++) {
    const char *key = ks->k[i];
    size_t len = strlen(key);
    uint32_t at = memcached_generate_hash(memc, key, len);
    if (at >= server_count(c)) die("%s: %s: index %u", c->name, key, at);
    /* libmemcached sets rc only on failure. */
    memcached_return_t rc = MEMCACHED_SUCCESS;
    const memcached_instance_st *inst = memcached_server_by_key(memc, key, len, &rc);
    if (!inst || rc != MEMCACHED_SUCCESS)
      die("%s: memcached_server_by_key(%s): %s", c->name, key, memcached_strerror(memc, rc));
    const struct server *s = &c->servers[at];
    in_port_t port = s->port ? s->port : MEMCACHED_DEFAULT_PORT;
    if (strcmp(memcached_server_name(inst), s->host) != 0 || memcached_server_port(inst) != port)
      die("%s: %s: memcached_generate_hash says %s:%u, memcached_server_by_key %s:%u", c->name,
          key, s->host, port, memcached_server_name(inst), memcached_server_port(inst));
    if (server_count(c) > 1 && ct[lower_bound(ct, n, key_hash(c, key))].index != at)
      die("%s: %s: the continuum read here disagrees with libmemcached", c->name, key);
    idx[i] = at;
  }
  return idx;
}

/* ---- descriptions ---- */

static char *points_text(const memcached_st *memc, const struct config *c) {
  uint32_t n, per[8] = {0};
  const struct memcached_continuum_item_st *ct = continuum(memc, c, &n);
  for (uint32_t i = 0; i < n; i++) per[ct[i].index]++;
  struct buf b = {0};
  for (size_t i = 0; i < server_count(c); i++) putf(&b, i ? ",%u" : "%u", per[i]);
  return b.p;
}

/* The first point value two different servers share; dies if there is none. */
static char *tie_text(const memcached_st *memc, const struct config *c) {
  uint32_t n;
  const struct memcached_continuum_item_st *ct = continuum(memc, c, &n);
  for (uint32_t i = 1; i < n; i++)
    if (ct[i].value == ct[i - 1].value && ct[i].index != ct[i - 1].index) {
      struct buf b = {0};
      putf(&b, "%u", ct[i].value);
      fprintf(stderr, "  tie: point %u of servers %u and %u\n", ct[i].value, ct[i - 1].index,
              ct[i].index);
      return b.p;
    }
  die("%s: no tied point in the continuum", c->name);
  return NULL;
}

static const struct config *config_named(const char *name) {
  for (size_t i = 0; i < NCONFIGS; i++)
    if (strcmp(CONFIGS[i].name, name) == 0) return &CONFIGS[i];
  die("no configuration %s", name);
  return NULL;
}

/* Compares this configuration's answers with `previous`'s on the same keys. */
static char *moved_text(const struct config *c, const struct keys *ks, const uint32_t *idx) {
  const struct config *p = config_named(c->previous);
  if (strcmp(p->keys, c->keys) != 0) die("%s: {moved} needs the same keys", c->name);
  memcached_st *memc = make_ring(p);
  uint32_t *before = place(memc, p, ks);
  size_t moved = 0, from_removed = 0, others = 0, removed_total = 0;
  for (size_t i = 0; i < ks->n; i++) {
    const struct server *was = &p->servers[before[i]];
    const struct server *now = &c->servers[idx[i]];
    int still_there = 0;
    for (size_t j = 0; j < server_count(c); j++)
      if (strcmp(c->servers[j].host, was->host) == 0 && c->servers[j].port == was->port)
        still_there = 1;
    if (!still_there) removed_total++;
    if (strcmp(was->host, now->host) != 0 || was->port != now->port) {
      moved++;
      if (still_there)
        others++;
      else
        from_removed++;
    }
  }
  free(before);
  memcached_free(memc);
  struct buf b = {0};
  if (others == 0 && from_removed == removed_total)
    putf(&b, "%zu of %zu (all %zu keys of the removed server, no others)", moved, ks->n,
         removed_total);
  else
    putf(&b, "%zu of %zu (%zu of the removed server's %zu keys and %zu others)", moved, ks->n,
         from_removed, removed_total, others);
  return b.p;
}

static char *description(const struct config *c, memcached_st *memc, const struct keys *ks,
                         const uint32_t *idx) {
  struct buf b = {0};
  const char *s = c->description;
  while (*s) {
    const char *open = strchr(s, '{');
    if (!open) {
      puts_(&b, s);
      break;
    }
    put(&b, s, (size_t)(open - s));
    char *sub = NULL;
    if (strncmp(open, "{points}", 8) == 0)
      sub = points_text(memc, c);
    else if (strncmp(open, "{tie}", 5) == 0)
      sub = tie_text(memc, c);
    else if (strncmp(open, "{moved}", 7) == 0)
      sub = moved_text(c, ks, idx);
    if (sub) {
      puts_(&b, sub);
      free(sub);
      s = strchr(open, '}') + 1;
    } else {
      put(&b, "{", 1); /* a literal brace, as in pylibmc's {'ketama': True} */
      s = open + 1;
    }
  }
  return b.p;
}

/* How the picked keys sit on the ring (to stderr): wrap:N above the highest point, low:N at
 * or below the lowest, keys exactly on a point, keys inside the interval of a tied point. */
static void report_keys(memcached_st *memc, const struct config *c, const struct keys *ks) {
  if (server_count(c) < 2) return;
  uint32_t n;
  const struct memcached_continuum_item_st *ct = continuum(memc, c, &n);
  size_t wrap = 0, low = 0, exact = 0, tied = 0;
  for (size_t i = 0; i < ks->n; i++) {
    uint32_t h = key_hash(c, ks->k[i]);
    uint32_t at = lower_bound(ct, n, h);
    if (h > ct[n - 1].value)
      wrap++;
    else if (h <= ct[0].value)
      low++;
    if (ct[at].value == h) exact++;
    if (at + 1 < n && ct[at + 1].value == ct[at].value && ct[at + 1].index != ct[at].index)
      tied++;
  }
  fprintf(stderr, "  keys above the highest point: %zu, at or below the lowest: %zu, "
                  "exactly on a point: %zu, on a tied point: %zu\n",
          wrap, low, exact, tied);
}

static void generate(const struct config *c, const char *keys_dir, const char *out_dir) {
  struct keys ks = read_keys(keys_dir, c->keys);
  memcached_st *memc = make_ring(c);
  fprintf(stderr, "%s: %zu servers, %zu keys\n", c->name, server_count(c), ks.n);
  uint32_t *idx = place(memc, c, &ks);
  report_keys(memc, c, &ks);
  char *desc = description(c, memc, &ks, idx);

  struct buf b = {0};
  puts_(&b, "{\n \"description\": ");
  put_json(&b, desc);
  puts_(&b, ",\n \"mode\": ");
  put_json(&b, c->mode == LIBKETAMA_COMPATIBLE ? "libketama_compatible" : "ketama_md5");
  puts_(&b, ",\n \"servers\": [\n");
  for (size_t i = 0; i < server_count(c); i++) {
    const struct server *s = &c->servers[i];
    puts_(&b, "  {\"host\": ");
    put_json(&b, s->host);
    putf(&b, ", \"port\": %u, \"weight\": %u}%s\n", s->port, s->weight,
         i + 1 < server_count(c) ? "," : "");
  }
  puts_(&b, " ],\n \"cases\": [\n");
  for (size_t i = 0; i < ks.n; i++) {
    const struct server *s = &c->servers[idx[i]];
    char addr[300];
    snprintf(addr, sizeof addr, "%s:%u", s->host, s->port ? s->port : MEMCACHED_DEFAULT_PORT);
    puts_(&b, "  {\"key\": ");
    put_json(&b, ks.k[i]);
    puts_(&b, ", \"server\": ");
    put_json(&b, addr);
    puts_(&b, i + 1 < ks.n ? "},\n" : "}\n");
  }
  puts_(&b, " ]\n}\n");

  char path[4096];
  snprintf(path, sizeof path, "%s/%s.json", out_dir, c->name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(b.p, 1, b.len, f) != b.len || fclose(f) != 0)
    die("%s: %s", path, strerror(errno));

  free(b.p);
  free(desc);
  free(idx);
  memcached_free(memc);
  for (size_t i = 0; i < ks.n; i++) free(ks.k[i]);
  free(ks.k);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s KEYS_DIR OUT_DIR\n", argv[0]);
    return 2;
  }
  fprintf(stderr, "libmemcached %s\n", memcached_lib_version());
  for (size_t i = 0; i < NCONFIGS; i++) generate(&CONFIGS[i], argv[1], argv[2]);
  return 0;
}
