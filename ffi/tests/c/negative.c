/*
 * negative.c: every misuse returns its documented result code, never
 * crashes. Linked against the static library.
 *
 * usage: negative HOMESERVER_URL USER PASSWORD WORK_DIR
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloister.h"

static int failures = 0;

#define EXPECT_CODE(call, want)                                                                 \
    do {                                                                                        \
        cloister_result got_ = (call);                                                          \
        if (got_ != (want)) {                                                                   \
            fprintf(stderr, "FAIL %s:%d: %s returned %u (%s), want %s\n", __FILE__, __LINE__,   \
                    #call, got_, cloister_result_str(got_), #want);                             \
            failures++;                                                                         \
        }                                                                                       \
    } while (0)

#define EXPECT(cond)                                                                            \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                     \
            failures++;                                                                         \
        }                                                                                       \
    } while (0)

#define SENTINEL ((void *)0x1)

static int last_error_contains(const cloister_client *client, const char *needle) {
    char *message = NULL;
    if (cloister_client_last_error(client, &message) != CLOISTER_RESULT_OK) return 0;
    int found = strstr(message, needle) != NULL;
    if (!found) fprintf(stderr, "last error was: %s\n", message);
    cloister_string_free(message);
    return found;
}

static void null_arguments(const char *url, const char *dir) {
    cloister_client *client = SENTINEL;
    char path[4096];
    snprintf(path, sizeof path, "%s/null.db", dir);
    EXPECT_CODE(cloister_client_new(NULL, path, "pw", &client), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_new(url, NULL, "pw", &client), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_new(url, path, NULL, &client), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_new(url, path, "pw", NULL), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT(client == SENTINEL); /* out-parameters are written only on success */

    char *text = SENTINEL;
    cloister_string_list *list = SENTINEL;
    cloister_event *event = SENTINEL;
    cloister_event_list *events = SENTINEL;
    cloister_buffer *buffer = SENTINEL;
    EXPECT_CODE(cloister_client_login(NULL, "u", "p", NULL), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_logout(NULL), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_close(NULL), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_last_error(NULL, &text), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_user_id(NULL, &text), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_device_id(NULL, &text), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_sync_start(NULL), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_sync_stop(NULL), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_next_event(NULL, 0, &event), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_set_event_callback(NULL, NULL, NULL), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_create_room(NULL, NULL, NULL, 0, &text), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_invite(NULL, "!r:s", "@u:s"), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_join(NULL, "!r:s", NULL), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_leave(NULL, "!r:s"), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_send_text(NULL, "!r:s", "hi", NULL), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_send_file_buffer(NULL, "!r:s", "f", NULL, NULL, 0, NULL),
                CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_send_file_path(NULL, "!r:s", "/f", NULL, NULL), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_download_file(NULL, NULL, &buffer), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_download_file_to_path(NULL, NULL, "/f"), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_rooms(NULL, &list), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_room_members(NULL, "!r:s", &list), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_room_messages(NULL, "!r:s", NULL, 10, &events), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_devices(NULL, &list), CLOISTER_RESULT_NULL_ARGUMENT);
    cloister_device_trust trust = CLOISTER_DEVICE_TRUST_BLOCKED;
    EXPECT_CODE(cloister_client_device_trust(NULL, "@u:s", "D", &trust), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_set_device_trust(NULL, "@u:s", "D", CLOISTER_LOCAL_TRUST_VERIFIED),
                CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT(trust == CLOISTER_DEVICE_TRUST_BLOCKED);
    EXPECT(text == SENTINEL && list == SENTINEL && event == SENTINEL && events == SENTINEL &&
           buffer == SENTINEL);
    EXPECT(!cloister_client_is_logged_in(NULL));
    EXPECT(cloister_client_last_retry_after_ms(NULL) == 0);

    /* Accessors of NULL objects give NULL / 0; frees of NULL are no-ops. */
    EXPECT(cloister_event_get_kind(NULL) == 0 && cloister_event_body(NULL) == NULL);
    EXPECT(cloister_event_room_id(NULL) == NULL && cloister_event_timestamp(NULL) == 0);
    EXPECT(!cloister_event_has_file(NULL) && !cloister_event_is_verified(NULL));
    EXPECT(cloister_event_result(NULL) == CLOISTER_RESULT_OK);
    EXPECT(cloister_buffer_len(NULL) == 0 && cloister_buffer_data(NULL) == NULL);
    EXPECT(cloister_string_list_len(NULL) == 0 && cloister_string_list_get(NULL, 0) == NULL);
    EXPECT(cloister_event_list_len(NULL) == 0 && cloister_event_list_get(NULL, 0) == NULL);
    cloister_client_free(NULL);
    cloister_string_free(NULL);
    cloister_buffer_free(NULL);
    cloister_string_list_free(NULL);
    cloister_event_free(NULL);
    cloister_event_list_free(NULL);
}

static void result_texts(void) {
    for (uint32_t code = 0; code <= CLOISTER_RESULT_LIMIT_EXCEEDED; code++) {
        const char *text = cloister_result_str(code);
        EXPECT(text != NULL && strcmp(text, "unknown result code") != 0);
    }
    EXPECT(strcmp(cloister_result_str(CLOISTER_RESULT_LIMIT_EXCEEDED + 1), "unknown result code") == 0);
    EXPECT(strcmp(cloister_result_str(0xffffffffu), "unknown result code") == 0);
    EXPECT(CLOISTER_RESULT_OK == 0 && CLOISTER_RESULT_PANIC == 4 && CLOISTER_RESULT_CLOSED == 5);
    /* Values are stable: new codes only ever come at the end. */
    EXPECT(CLOISTER_RESULT_WRONG_THREAD == 22 && CLOISTER_RESULT_UNKNOWN_TOKEN == 23 &&
           CLOISTER_RESULT_LIMIT_EXCEEDED == 24);
    EXPECT_CODE(cloister_log_set_level(99), CLOISTER_RESULT_INVALID_ARGUMENT);
    EXPECT_CODE(cloister_log_set_level(CLOISTER_LOG_OFF), CLOISTER_RESULT_OK);
}

static void bad_strings_and_stores(const char *url, const char *dir) {
    cloister_client *client = SENTINEL, *again = SENTINEL;
    char path[4096];
    snprintf(path, sizeof path, "%s/store.db", dir);
    EXPECT_CODE(cloister_client_new(url, "\xff\xfe.db", "pw", &client), CLOISTER_RESULT_INVALID_UTF8);
    EXPECT_CODE(cloister_client_new(url, path, "\xc3\x28", &client), CLOISTER_RESULT_INVALID_UTF8);
    EXPECT_CODE(cloister_client_new("ftp://example.org", path, "pw", &client),
                CLOISTER_RESULT_INVALID_ARGUMENT);

    /* Wrong passphrase: create with one, reopen with another. */
    EXPECT_CODE(cloister_client_new(url, path, "the right one", &client), CLOISTER_RESULT_OK);
    EXPECT_CODE(cloister_client_new(url, path, "the right one", &again), CLOISTER_RESULT_STORE_IN_USE);
    EXPECT(again == SENTINEL);
    cloister_client_free(client);
    client = SENTINEL;
    EXPECT_CODE(cloister_client_new(url, path, "a wrong one", &client), CLOISTER_RESULT_WRONG_PASSPHRASE);
    EXPECT(client == SENTINEL);
    EXPECT_CODE(cloister_client_new(url, path, "the right one", &client), CLOISTER_RESULT_OK);

    /* Not logged in yet. */
    EXPECT(!cloister_client_is_logged_in(client));
    EXPECT_CODE(cloister_client_send_text(client, "!r:localhost", "hi", NULL), CLOISTER_RESULT_NOT_LOGGED_IN);
    EXPECT(last_error_contains(client, "not logged in"));
    EXPECT_CODE(cloister_client_sync_start(client), CLOISTER_RESULT_NOT_LOGGED_IN);
    cloister_device_trust trust;
    EXPECT_CODE(cloister_client_device_trust(client, "@u:localhost", "D", &trust), CLOISTER_RESULT_NOT_LOGGED_IN);
    EXPECT_CODE(cloister_client_device_trust(client, NULL, "D", &trust), CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_set_device_trust(client, "@u:localhost", "D", 3), CLOISTER_RESULT_INVALID_ARGUMENT);
    EXPECT_CODE(cloister_client_login(client, "\xff", "pw", NULL), CLOISTER_RESULT_INVALID_UTF8);
    cloister_client_free(client);
}

static void unreachable_server(const char *dir) {
    cloister_client *client = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/unreachable.db", dir);
    EXPECT_CODE(cloister_client_new("http://127.0.0.1:1", path, "pw", &client), CLOISTER_RESULT_OK);
    EXPECT_CODE(cloister_client_login(client, "nobody", "pw", NULL), CLOISTER_RESULT_NETWORK);
    EXPECT(last_error_contains(client, "network error"));
    cloister_client_free(client);
}

/* Inside a callback (a library thread) blocking calls are refused. */
struct inside {
    cloister_client *client;
    pthread_mutex_t lock;
    pthread_cond_t done;
    int calls;
    cloister_result rooms_result, wait_result;
};

static void on_event(void *user_data, const cloister_event *event) {
    struct inside *inside = user_data;
    (void)event;
    cloister_string_list *list = NULL;
    cloister_event *next = NULL;
    cloister_result rooms = cloister_client_rooms(inside->client, &list);
    cloister_result wait = cloister_client_next_event(inside->client, 10, &next);
    pthread_mutex_lock(&inside->lock);
    inside->calls++;
    inside->rooms_result = rooms;
    inside->wait_result = wait;
    pthread_cond_broadcast(&inside->done);
    pthread_mutex_unlock(&inside->lock);
}

static int copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char chunk[8192];
    size_t n;
    int ok = in != NULL && out != NULL;
    while (ok && (n = fread(chunk, 1, sizeof chunk, in)) > 0) ok = fwrite(chunk, 1, n, out) == n;
    if (in != NULL) fclose(in);
    if (out != NULL && fclose(out) != 0) ok = 0;
    return ok;
}

static void *wait_for_event(void *client) {
    cloister_event *event = NULL;
    cloister_result result = cloister_client_next_event(client, 60000, &event);
    if (result == CLOISTER_RESULT_OK) cloister_event_free(event);
    return (void *)(uintptr_t)result;
}

static void logged_in(const char *url, const char *user, const char *password, const char *dir) {
    cloister_client *client = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/logged-in.db", dir);
    EXPECT_CODE(cloister_client_new(url, path, "pw", &client), CLOISTER_RESULT_OK);
    EXPECT_CODE(cloister_client_login(client, user, "not the password", NULL), CLOISTER_RESULT_FORBIDDEN);
    EXPECT_CODE(cloister_client_login(client, user, password, NULL), CLOISTER_RESULT_OK);
    EXPECT_CODE(cloister_client_login(client, user, password, NULL), CLOISTER_RESULT_ALREADY_LOGGED_IN);

    /* Invalid room and user ids are refused before anything is sent. */
    char *text = SENTINEL;
    cloister_event_list *events = SENTINEL;
    cloister_string_list *list = SENTINEL;
    EXPECT_CODE(cloister_client_send_text(client, "not-a-room", "hi", NULL), CLOISTER_RESULT_INVALID_ROOM_ID);
    EXPECT(last_error_contains(client, "not a room id"));
    EXPECT_CODE(cloister_client_send_text(client, "!r:localhost", "\xed\xa0\x80", NULL), CLOISTER_RESULT_INVALID_UTF8);
    EXPECT_CODE(cloister_client_join(client, "", &text), CLOISTER_RESULT_INVALID_ROOM_ID);
    EXPECT_CODE(cloister_client_leave(client, "!"), CLOISTER_RESULT_INVALID_ROOM_ID);
    EXPECT_CODE(cloister_client_leave(client, "!room:not a server"), CLOISTER_RESULT_INVALID_ROOM_ID);
    EXPECT_CODE(cloister_client_invite(client, "room", "@u:localhost"), CLOISTER_RESULT_INVALID_ROOM_ID);
    EXPECT_CODE(cloister_client_invite(client, "!r:localhost", "bob"), CLOISTER_RESULT_INVALID_USER_ID);
    EXPECT_CODE(cloister_client_room_members(client, "x", &list), CLOISTER_RESULT_INVALID_ROOM_ID);
    EXPECT_CODE(cloister_client_room_messages(client, "x", NULL, 10, &events), CLOISTER_RESULT_INVALID_ROOM_ID);
    EXPECT_CODE(cloister_client_send_file_buffer(client, "x", "f", NULL, NULL, 0, NULL),
                CLOISTER_RESULT_INVALID_ROOM_ID);
    const char *bad_invitees[] = {"bob"};
    EXPECT_CODE(cloister_client_create_room(client, NULL, bad_invitees, 1, &text), CLOISTER_RESULT_INVALID_USER_ID);
    EXPECT_CODE(cloister_client_create_room(client, NULL, NULL, 1, &text), CLOISTER_RESULT_NULL_ARGUMENT);
    /* Well-formed but unknown rooms are refused by the server. */
    EXPECT_CODE(cloister_client_join(client, "!unknown:localhost", &text), CLOISTER_RESULT_NOT_FOUND);
    EXPECT_CODE(cloister_client_room_messages(client, "!unknown:localhost", NULL, 10, &events),
                CLOISTER_RESULT_NOT_FOUND);
    /* Room version 12 ids have no server part: they pass the argument check
     * and reach the server, which does not know this room. */
    cloister_result v12 = cloister_client_join(client, "!abcdefghijklmnop", &text);
    EXPECT(v12 == CLOISTER_RESULT_NOT_FOUND || v12 == CLOISTER_RESULT_FORBIDDEN);
    if (v12 != CLOISTER_RESULT_NOT_FOUND && v12 != CLOISTER_RESULT_FORBIDDEN)
        fprintf(stderr, "join of a v12 room id returned %u (%s)\n", v12, cloister_result_str(v12));
    v12 = cloister_client_room_messages(client, "!abcdefghijklmnop", NULL, 10, &events);
    EXPECT(v12 == CLOISTER_RESULT_NOT_FOUND || v12 == CLOISTER_RESULT_FORBIDDEN);
    EXPECT(text == SENTINEL && events == SENTINEL && list == SENTINEL);
    EXPECT(cloister_client_last_retry_after_ms(client) == 0);

    /* Other argument checks. */
    char *room = NULL;
    EXPECT_CODE(cloister_client_create_room(client, "negative", NULL, 0, &room), CLOISTER_RESULT_OK);
    EXPECT_CODE(cloister_client_room_messages(client, room, NULL, 0, &events), CLOISTER_RESULT_INVALID_ARGUMENT);
    EXPECT_CODE(cloister_client_send_file_buffer(client, room, "f", NULL, NULL, 5, NULL),
                CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT_CODE(cloister_client_send_file_path(client, room, "/nonexistent/file", NULL, NULL), CLOISTER_RESULT_IO);
    cloister_event *event = SENTINEL;
    EXPECT_CODE(cloister_client_next_event(client, 0, &event), CLOISTER_RESULT_TIMEOUT);
    EXPECT(event == SENTINEL);
    EXPECT_CODE(cloister_client_sync_start(client), CLOISTER_RESULT_OK);
    EXPECT_CODE(cloister_client_sync_start(client), CLOISTER_RESULT_INVALID_STATE);
    /* A room event (not a file): download is refused. */
    event = NULL;
    for (int i = 0; i < 60 && event == NULL; i++) {
        cloister_event *next = NULL;
        if (cloister_client_next_event(client, 1000, &next) != CLOISTER_RESULT_OK) continue;
        if (cloister_event_room_id(next) != NULL && cloister_event_event_id(next) != NULL) event = next;
        else cloister_event_free(next);
    }
    EXPECT(event != NULL);
    cloister_buffer *buffer = SENTINEL;
    EXPECT_CODE(cloister_client_download_file(client, event, &buffer), CLOISTER_RESULT_INVALID_STATE);
    EXPECT(buffer == SENTINEL);
    cloister_event_free(event);

    /* Blocking calls from the callback's thread. */
    struct inside inside = {.client = client, .calls = 0};
    pthread_mutex_init(&inside.lock, NULL);
    pthread_cond_init(&inside.done, NULL);
    EXPECT_CODE(cloister_client_set_event_callback(client, on_event, &inside), CLOISTER_RESULT_OK);
    EXPECT_CODE(cloister_client_send_text(client, room, "to myself", NULL), CLOISTER_RESULT_OK);
    pthread_mutex_lock(&inside.lock);
    for (int i = 0; i < 120 && inside.calls == 0; i++) {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += 1;
        pthread_cond_timedwait(&inside.done, &inside.lock, &deadline);
    }
    EXPECT(inside.calls > 0);
    EXPECT(inside.rooms_result == CLOISTER_RESULT_WRONG_THREAD);
    EXPECT(inside.wait_result == CLOISTER_RESULT_WRONG_THREAD);
    pthread_mutex_unlock(&inside.lock);
    EXPECT_CODE(cloister_client_sync_stop(client), CLOISTER_RESULT_OK); /* no callback after this */
    EXPECT_CODE(cloister_client_set_event_callback(client, NULL, NULL), CLOISTER_RESULT_OK);
    pthread_cond_destroy(&inside.done);
    pthread_mutex_destroy(&inside.lock);

    /* Use after close: a waiting next_event is woken, every call returns
     * CLOISTER_RESULT_CLOSED, the last error stays readable. Sync is
     * stopped: once the queue is drained no event can come. */
    cloister_event *queued = NULL;
    while (cloister_client_next_event(client, 0, &queued) == CLOISTER_RESULT_OK) cloister_event_free(queued);
    pthread_t waiter;
    pthread_create(&waiter, NULL, wait_for_event, client);
    EXPECT_CODE(cloister_client_close(client), CLOISTER_RESULT_OK);
    void *waited = NULL;
    pthread_join(waiter, &waited);
    EXPECT((cloister_result)(uintptr_t)waited == CLOISTER_RESULT_CLOSED);
    EXPECT_CODE(cloister_client_close(client), CLOISTER_RESULT_CLOSED);
    EXPECT_CODE(cloister_client_send_text(client, room, "hi", NULL), CLOISTER_RESULT_CLOSED);
    EXPECT_CODE(cloister_client_login(client, user, password, NULL), CLOISTER_RESULT_CLOSED);
    EXPECT_CODE(cloister_client_sync_start(client), CLOISTER_RESULT_CLOSED);
    EXPECT_CODE(cloister_client_next_event(client, 0, &event), CLOISTER_RESULT_CLOSED);
    EXPECT_CODE(cloister_client_rooms(client, &list), CLOISTER_RESULT_CLOSED);
    EXPECT_CODE(cloister_client_user_id(client, &text), CLOISTER_RESULT_CLOSED);
    EXPECT(!cloister_client_is_logged_in(client));
    EXPECT(last_error_contains(client, "closed"));
    cloister_client_free(client);
    cloister_string_free(room);

    /* The closed store is released: it opens again, still logged in. A
     * copy of it holds the same session: when the original logs out, the
     * copy's sync fails and reports a sync error. */
    char copy[4096];
    snprintf(copy, sizeof copy, "%s/copy.db", dir);
    EXPECT(copy_file(path, copy));
    EXPECT_CODE(cloister_client_new(url, path, "pw", &client), CLOISTER_RESULT_OK);
    EXPECT(cloister_client_is_logged_in(client));
    cloister_client *twin = NULL;
    EXPECT_CODE(cloister_client_new(url, copy, "pw", &twin), CLOISTER_RESULT_OK);
    EXPECT(cloister_client_is_logged_in(twin));
    EXPECT_CODE(cloister_client_logout(client), CLOISTER_RESULT_OK);
    EXPECT_CODE(cloister_client_logout(client), CLOISTER_RESULT_NOT_LOGGED_IN);
    cloister_client_free(client);
    EXPECT_CODE(cloister_client_sync_start(twin), CLOISTER_RESULT_OK);
    int sync_error = 0;
    for (int i = 0; i < 90 && !sync_error; i++) {
        cloister_event *next = NULL;
        if (cloister_client_next_event(twin, 1000, &next) != CLOISTER_RESULT_OK) continue;
        if (cloister_event_get_kind(next) == CLOISTER_EVENT_SYNC_ERROR) {
            EXPECT(strstr(cloister_event_body(next), "M_UNKNOWN_TOKEN") != NULL);
            EXPECT(cloister_event_result(next) == CLOISTER_RESULT_UNKNOWN_TOKEN);
            sync_error = 1;
        }
        cloister_event_free(next);
    }
    EXPECT(sync_error);

    /* The twin's session was revoked: calls that reach the server say so
     * (not FORBIDDEN), and the app signs in again: logout (which only wipes
     * the store now) and login, as a new device. */
    list = SENTINEL;
    EXPECT_CODE(cloister_client_devices(twin, &list), CLOISTER_RESULT_UNKNOWN_TOKEN);
    EXPECT(list == SENTINEL);
    EXPECT(last_error_contains(twin, "M_UNKNOWN_TOKEN"));
    EXPECT(cloister_client_last_retry_after_ms(twin) == 0);
    EXPECT(cloister_client_is_logged_in(twin));
    EXPECT_CODE(cloister_client_logout(twin), CLOISTER_RESULT_OK);
    EXPECT(!cloister_client_is_logged_in(twin));
    EXPECT_CODE(cloister_client_login(twin, user, password, "signed in again"), CLOISTER_RESULT_OK);
    EXPECT_CODE(cloister_client_devices(twin, &list), CLOISTER_RESULT_OK);
    EXPECT(list != SENTINEL && cloister_string_list_len(list) >= 1);
    cloister_string_list_free(list);
    cloister_client_free(twin);
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOMESERVER_URL USER PASSWORD WORK_DIR\n", argv[0]);
        return 2;
    }
    null_arguments(argv[1], argv[4]);
    result_texts();
    bad_strings_and_stores(argv[1], argv[4]);
    unreachable_server(argv[4]);
    logged_in(argv[1], argv[2], argv[3], argv[4]);
    if (failures > 0) {
        fprintf(stderr, "negative: %d failure(s)\n", failures);
        return 1;
    }
    printf("negative: ok\n");
    return 0;
}
