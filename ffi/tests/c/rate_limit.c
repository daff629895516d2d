/*
 * rate_limit.c: a homeserver that rate-limits logins (ffi/tests/c_api.rs
 * starts one allowing three attempts, refilling one every ~17 minutes)
 * answers the fourth with M_LIMIT_EXCEEDED: the app sees
 * CLOISTER_RESULT_LIMIT_EXCEEDED and the server's retry delay.
 *
 * usage: rate_limit HOMESERVER_URL USER PASSWORD WORK_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloister.h"

static int failures = 0;

#define EXPECT(cond)                                                                            \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                     \
            failures++;                                                                         \
        }                                                                                       \
    } while (0)

static int last_error_contains(const cloister_client *client, const char *needle) {
    char *message = NULL;
    if (cloister_client_last_error(client, &message) != CLOISTER_RESULT_OK) return 0;
    int found = strstr(message, needle) != NULL;
    if (!found) fprintf(stderr, "last error was: %s\n", message);
    cloister_string_free(message);
    return found;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOMESERVER_URL USER PASSWORD WORK_DIR\n", argv[0]);
        return 2;
    }
    const char *url = argv[1], *user = argv[2], *password = argv[3];
    char path[4096];
    snprintf(path, sizeof path, "%s/rate-limit.db", argv[4]);
    cloister_client *client = NULL;
    if (cloister_client_new(url, path, "pw", &client) != CLOISTER_RESULT_OK) {
        fprintf(stderr, "FAIL: cloister_client_new\n");
        return 1;
    }

    /* Wrong passwords until the server stops listening. */
    cloister_result result = CLOISTER_RESULT_OK;
    int attempts = 0;
    while (attempts < 10) {
        result = cloister_client_login(client, user, "not the password", NULL);
        attempts++;
        if (result != CLOISTER_RESULT_FORBIDDEN) break;
        EXPECT(cloister_client_last_retry_after_ms(client) == 0);
    }
    EXPECT(result == CLOISTER_RESULT_LIMIT_EXCEEDED);
    EXPECT(attempts == 4); /* the server allows three */
    EXPECT(last_error_contains(client, "M_LIMIT_EXCEEDED"));
    /* The library waits out short delays itself (up to 30 s): what reaches
     * the app is longer, and says how long. */
    uint64_t retry = cloister_client_last_retry_after_ms(client);
    EXPECT(retry > 30000);
    printf("rate limited after %d attempts; retry after %llu ms\n", attempts, (unsigned long long)retry);

    /* The right password does not get through either, until the delay. */
    EXPECT(cloister_client_login(client, user, password, NULL) == CLOISTER_RESULT_LIMIT_EXCEEDED);
    EXPECT(!cloister_client_is_logged_in(client));
    EXPECT(cloister_client_last_retry_after_ms(client) > 30000);

    /* The delay belongs to the last error: a later error without one
     * resets it. */
    EXPECT(cloister_client_send_text(client, "not-a-room", "hi", NULL) == CLOISTER_RESULT_INVALID_ROOM_ID);
    EXPECT(cloister_client_last_retry_after_ms(client) == 0);

    cloister_client_free(client);
    if (failures > 0) {
        fprintf(stderr, "rate_limit: %d failure(s)\n", failures);
        return 1;
    }
    printf("rate_limit: ok\n");
    return 0;
}
