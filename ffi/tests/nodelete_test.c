/* The library stays loaded once loaded: dlclose() does not unload it (it is linked
 * -z nodelete). PHP's FFI closes a library a request loaded (FFI::cdef) when the request
 * ends; the process-wide persistent clients (and their connections) live in the library, so
 * they must survive that. Built and run by ffi/tests/c_abi.rs (not linked against the
 * library: it is only dlopen()ed here).
 *
 * usage: nodelete_test /path/to/libmultiput_ffi.so */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "FAIL dlopen: %s\n", dlerror());
        return 1;
    }
    int32_t (*pecl)(int32_t) = (int32_t (*)(int32_t))dlsym(h, "multiput_pecl_result");
    if (!pecl || pecl(7) != 16) {
        fprintf(stderr, "FAIL multiput_pecl_result\n");
        return 1;
    }
    dlclose(h);
    void *again = dlopen(argv[1], RTLD_NOW | RTLD_NOLOAD);
    if (!again) {
        printf("FAIL: dlclose() unloaded the library\n");
        return 1;
    }
    printf("ok: still loaded after dlclose()\n");
    return 0;
}
