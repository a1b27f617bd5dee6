/* The smallest C program on multiput: connect to the servers named on the command line (or
 * $MULTIPUT_SERVERS), store a value, read it back, and print it.
 *
 *   cc hello.c $(pkg-config --cflags --libs multiput) -o hello
 *   ./hello 127.0.0.1:11211,127.0.0.1:11212
 *
 * (scripts/install-c.sh installs the library, the header and multiput.pc.) */
#include <multiput.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    const char *servers = argc > 1 ? argv[1] : getenv("MULTIPUT_SERVERS");
    if (servers == NULL) {
        fprintf(stderr, "usage: %s HOST:PORT[,HOST:PORT...]\n", argv[0]);
        return 2;
    }
    char options[1024];
    snprintf(options, sizeof options, "servers=%s;timeout_ms=500", servers);
    MultiputClient *client = NULL;
    if (multiput_client_open(options, &client) != MULTIPUT_OK) {
        fprintf(stderr, "multiput: %s\n", multiput_last_error());
        return 1;
    }
    const char *key = "hello:c", *value = "hello from C";
    int32_t rc = multiput_store(client, MULTIPUT_SET, key, strlen(key), MULTIPUT_TYPE_STRING, 0,
                                value, strlen(value), 60, 0);
    MultiputItem *item = NULL;
    if (rc == MULTIPUT_OK) rc = multiput_get(client, key, strlen(key), 0, &item);
    if (rc != MULTIPUT_OK || item == NULL) {
        fprintf(stderr, "multiput: %s\n", rc == MULTIPUT_OK ? "the value is missing" : multiput_last_error());
        multiput_client_free(client);
        return 1;
    }
    printf("%s = %.*s (multiput %s)\n", key, (int)item->data_len, (const char *)item->data,
           multiput_version());
    multiput_item_free(item);
    multiput_client_free(client);
    return 0;
}
