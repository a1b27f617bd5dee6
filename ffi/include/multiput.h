/* multiput C ABI. Kept in sync with ffi/src/lib.rs (the Rust source is the reference; the
 * test program ffi/tests/ring_test.c compiles against this header and links the library).
 * No function panics across the boundary; errors are codes, with the message from
 * multiput_last_error(). */
#ifndef MULTIPUT_H
#define MULTIPUT_H

#include <stddef.h>
#include <stdint.h>

#define MULTIPUT_OK 0
#define MULTIPUT_E_ARGUMENT 1
#define MULTIPUT_E_CONFIG 2
#define MULTIPUT_E_KEY 3
#define MULTIPUT_E_INTERNAL 99

/* An opaque ketama ring. */
typedef struct MultiputRing MultiputRing;

/* The calling thread's last error message; valid until its next call. Never NULL. */
const char *multiput_last_error(void);

/* Build a ring from "host[:port[:weight]],..." and a mode ("libketama_compatible", the default
 * when mode is NULL, or "ketama_md5"). Free it with multiput_ring_free. */
int32_t multiput_ring_new(const char *servers, const char *mode, MultiputRing **out);

/* Free a ring; NULL is ignored. */
void multiput_ring_free(MultiputRing *ring);

/* The owner of a key: its index in the configured list, and (if address is not NULL) its
 * "host:port", owned by the ring. */
int32_t multiput_ring_server_for(const MultiputRing *ring, const uint8_t *key, size_t key_len,
                                 size_t *index, const char **address);

/* The library version, a static string. */
const char *multiput_version(void);

#endif
