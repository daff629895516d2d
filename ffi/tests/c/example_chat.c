/*
 * example_chat.c: two users exchange end-to-end encrypted messages and
 * files through libcloister. This is the complete example of docs/ffi.md,
 * and a test (ffi/tests/c_api.rs runs it against a real server, also under
 * valgrind).
 *
 * usage: example_chat HOMESERVER_URL ALICE BOB PASSWORD WORK_DIR
 * (ALICE and BOB are registered accounts, both with PASSWORD).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloister.h"

/* Fail with the handle's last error text. */
static void fail(const char *what, cloister_result code, const cloister_client *client) {
    char *message = NULL;
    if (client != NULL && cloister_client_last_error(client, &message) == CLOISTER_RESULT_OK) {
        fprintf(stderr, "FAIL %s: %s (%s)\n", what, cloister_result_str(code), message);
        cloister_string_free(message);
    } else {
        fprintf(stderr, "FAIL %s: %s\n", what, cloister_result_str(code));
    }
    exit(1);
}

#define CHECK(client, call)                                                                     \
    do {                                                                                        \
        cloister_result check_result_ = (call);                                                 \
        if (check_result_ != CLOISTER_RESULT_OK) fail(#call, check_result_, (client));          \
    } while (0)

#define EXPECT(cond)                                                                            \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                     \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

static int str_eq(const char *a, const char *b) { return a != NULL && b != NULL && strcmp(a, b) == 0; }

/* Poll Bob's queue until an event of `kind` in `room_id` for which `match`
 * holds (the caller frees it). */
static cloister_event *wait_for(cloister_client *client, uint32_t kind, const char *room_id,
                                int (*match)(const cloister_event *, const void *), const void *arg) {
    time_t deadline = time(NULL) + 120;
    while (time(NULL) < deadline) {
        cloister_event *event = NULL;
        cloister_result result = cloister_client_next_event(client, 1000, &event);
        if (result == CLOISTER_RESULT_TIMEOUT) continue;
        CHECK(client, result);
        if (cloister_event_get_kind(event) == CLOISTER_EVENT_SYNC_ERROR)
            fprintf(stderr, "note: sync error: %s\n", cloister_event_body(event));
        if (cloister_event_get_kind(event) == kind && str_eq(cloister_event_room_id(event), room_id) &&
            (match == NULL || match(event, arg)))
            return event;
        cloister_event_free(event);
    }
    fprintf(stderr, "FAIL: no event of kind %u in %s within 120 s\n", kind, room_id);
    exit(1);
}

static int body_is(const cloister_event *event, const void *body) {
    return str_eq(cloister_event_body(event), body);
}

/* Alice receives events through a callback, on a library thread: it
 * copies what it needs under a mutex and signals the main thread. */
struct inbox {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char *texts[64];
    int text_count;
    int bob_left;
    int bob_key_changes;
    const char *bob;
};

static void on_event(void *user_data, const cloister_event *event) {
    struct inbox *inbox = user_data;
    pthread_mutex_lock(&inbox->lock);
    if (cloister_event_get_kind(event) == CLOISTER_EVENT_MESSAGE && inbox->text_count < 64 &&
        cloister_event_body(event) != NULL)
        inbox->texts[inbox->text_count++] = strdup(cloister_event_body(event));
    if (cloister_event_get_kind(event) == CLOISTER_EVENT_MEMBERSHIP &&
        str_eq(cloister_event_state_key(event), inbox->bob) &&
        str_eq(cloister_event_membership(event), "leave"))
        inbox->bob_left = 1;
    if (cloister_event_get_kind(event) == CLOISTER_EVENT_KEY_CHANGE &&
        str_eq(cloister_event_sender(event), inbox->bob))
        inbox->bob_key_changes++;
    pthread_cond_broadcast(&inbox->changed);
    pthread_mutex_unlock(&inbox->lock);
}

static int inbox_has(struct inbox *inbox, const char *text) {
    for (int i = 0; i < inbox->text_count; i++)
        if (strcmp(inbox->texts[i], text) == 0) return 1;
    return 0;
}

/* Wait until the callback saw `text`, or else (NULL) a key change of
 * Bob's (`what` = "keys") or Bob leaving. */
static void inbox_wait(struct inbox *inbox, const char *text, const char *what) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 120;
    pthread_mutex_lock(&inbox->lock);
    while (text != NULL   ? !inbox_has(inbox, text)
           : str_eq(what, "keys") ? inbox->bob_key_changes == 0
                                  : !inbox->bob_left)
        if (pthread_cond_timedwait(&inbox->changed, &inbox->lock, &deadline) != 0) {
            fprintf(stderr, "FAIL: Alice never saw %s\n", text != NULL ? text : what);
            exit(1);
        }
    pthread_mutex_unlock(&inbox->lock);
}

static int list_contains(const cloister_string_list *list, const char *item) {
    for (size_t i = 0; i < cloister_string_list_len(list); i++)
        if (str_eq(cloister_string_list_get(list, i), item)) return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOMESERVER_URL ALICE BOB PASSWORD WORK_DIR\n", argv[0]);
        return 2;
    }
    const char *url = argv[1], *password = argv[4], *dir = argv[5];
    char path[4096];

    /* The header and the library agree on the version. */
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", CLOISTER_VERSION_MAJOR, CLOISTER_VERSION_MINOR,
             CLOISTER_VERSION_PATCH);
    EXPECT(str_eq(cloister_version(), version));
    EXPECT(cloister_version_number() == CLOISTER_VERSION_NUMBER);
    EXPECT(CLOISTER_VERSION_NUMBER ==
           CLOISTER_VERSION_MAJOR * 10000 + CLOISTER_VERSION_MINOR * 100 + CLOISTER_VERSION_PATCH);
    CHECK(NULL, cloister_log_set_level(CLOISTER_LOG_WARN));

    /* Open both encrypted stores and log in. */
    cloister_client *alice = NULL, *bob = NULL;
    snprintf(path, sizeof path, "%s/alice.db", dir);
    CHECK(NULL, cloister_client_new(url, path, "alice's passphrase", &alice));
    snprintf(path, sizeof path, "%s/bob.db", dir);
    CHECK(NULL, cloister_client_new(url, path, "bob's passphrase", &bob));
    CHECK(alice, cloister_client_login(alice, argv[2], password, "example (alice)"));
    CHECK(bob, cloister_client_login(bob, argv[3], password, NULL));
    EXPECT(cloister_client_is_logged_in(alice));
    char *alice_id = NULL, *bob_id = NULL, *alice_device = NULL;
    CHECK(alice, cloister_client_user_id(alice, &alice_id));
    CHECK(bob, cloister_client_user_id(bob, &bob_id));
    CHECK(alice, cloister_client_device_id(alice, &alice_device));

    /* Alice's events go to a callback; Bob polls his queue. */
    struct inbox inbox = {.text_count = 0, .bob_left = 0, .bob_key_changes = 0, .bob = bob_id};
    pthread_mutex_init(&inbox.lock, NULL);
    pthread_cond_init(&inbox.changed, NULL);
    CHECK(alice, cloister_client_set_event_callback(alice, on_event, &inbox));
    CHECK(alice, cloister_client_sync_start(alice));
    CHECK(bob, cloister_client_sync_start(bob));

    /* Alice creates an encrypted room and invites Bob, who joins. */
    const char *invitees[] = {bob_id};
    char *room = NULL;
    CHECK(alice, cloister_client_create_room(alice, "ffi example", invitees, 1, &room));
    cloister_event *invite = wait_for(bob, CLOISTER_EVENT_INVITE, room, NULL, NULL);
    EXPECT(str_eq(cloister_event_sender(invite), alice_id));
    cloister_event_free(invite);
    char *joined = NULL;
    CHECK(bob, cloister_client_join(bob, room, &joined));
    EXPECT(str_eq(joined, room));
    cloister_string_free(joined);

    /* Encrypted text both ways. */
    const char *hello = "hello Bob \xf0\x9f\x94\x90"; /* UTF-8 padlock */
    char *event_id = NULL;
    CHECK(alice, cloister_client_send_text(alice, room, hello, &event_id));
    EXPECT(event_id != NULL && event_id[0] == '$');
    cloister_event *text = wait_for(bob, CLOISTER_EVENT_MESSAGE, room, body_is, hello);
    EXPECT(str_eq(cloister_event_sender(text), alice_id));
    EXPECT(str_eq(cloister_event_event_id(text), event_id));
    EXPECT(str_eq(cloister_event_msgtype(text), "m.text"));
    EXPECT(cloister_event_encryption(text) == CLOISTER_ENCRYPTION_DECRYPTED);
    EXPECT(cloister_event_timestamp(text) > 0);
    EXPECT(!cloister_event_has_file(text));
    cloister_event_free(text);
    cloister_string_free(event_id);
    CHECK(bob, cloister_client_send_text(bob, room, "hi Alice", NULL));
    inbox_wait(&inbox, "hi Alice", NULL);

    /* Trust: to Bob, Alice's device is unverified until he compares its
     * fingerprint with her (out of band) and marks it verified; then her
     * messages say so. */
    cloister_device_trust trust = CLOISTER_DEVICE_TRUST_BLOCKED;
    CHECK(bob, cloister_client_device_trust(bob, alice_id, alice_device, &trust));
    EXPECT(trust == CLOISTER_DEVICE_TRUST_UNVERIFIED);
    CHECK(bob, cloister_client_set_device_trust(bob, alice_id, alice_device, CLOISTER_LOCAL_TRUST_VERIFIED));
    CHECK(bob, cloister_client_device_trust(bob, alice_id, alice_device, &trust));
    EXPECT(trust == CLOISTER_DEVICE_TRUST_VERIFIED);
    EXPECT(cloister_client_device_trust(bob, alice_id, "NO-SUCH-DEVICE", &trust) == CLOISTER_RESULT_NOT_FOUND);
    EXPECT(cloister_client_set_device_trust(bob, alice_id, alice_device, 7) == CLOISTER_RESULT_INVALID_ARGUMENT);
    CHECK(alice, cloister_client_send_text(alice, room, "verified hello", NULL));
    cloister_event *checked = wait_for(bob, CLOISTER_EVENT_MESSAGE, room, body_is, "verified hello");
    EXPECT(cloister_event_is_verified(checked));
    cloister_event_free(checked);

    /* A file from a buffer: Bob downloads it to memory and to a path. */
    size_t size = 100000;
    unsigned char *data = malloc(size);
    for (size_t i = 0; i < size; i++) data[i] = (unsigned char)(i * 7 + i / 251);
    CHECK(alice, cloister_client_send_file_buffer(alice, room, "data.bin", NULL, data, size, NULL));
    cloister_event *file = wait_for(bob, CLOISTER_EVENT_MESSAGE, room, body_is, "data.bin");
    EXPECT(cloister_event_has_file(file));
    EXPECT(str_eq(cloister_event_msgtype(file), "m.file"));
    cloister_buffer *buffer = NULL;
    CHECK(bob, cloister_client_download_file(bob, file, &buffer));
    EXPECT(cloister_buffer_len(buffer) == size);
    EXPECT(memcmp(cloister_buffer_data(buffer), data, size) == 0);
    cloister_buffer_free(buffer);
    snprintf(path, sizeof path, "%s/downloaded.bin", dir);
    CHECK(bob, cloister_client_download_file_to_path(bob, file, path));
    FILE *in = fopen(path, "rb");
    EXPECT(in != NULL);
    unsigned char *copy = malloc(size + 1);
    EXPECT(fread(copy, 1, size + 1, in) == size);
    fclose(in);
    EXPECT(memcmp(copy, data, size) == 0);
    free(copy);
    free(data);
    cloister_event_free(file);

    /* A file from a path. */
    snprintf(path, sizeof path, "%s/note.txt", dir);
    FILE *out = fopen(path, "wb");
    EXPECT(out != NULL);
    fputs("a note for Bob\n", out);
    fclose(out);
    CHECK(alice, cloister_client_send_file_path(alice, room, path, "text/plain", NULL));
    cloister_event *note = wait_for(bob, CLOISTER_EVENT_MESSAGE, room, body_is, "note.txt");
    CHECK(bob, cloister_client_download_file(bob, note, &buffer));
    EXPECT(cloister_buffer_len(buffer) == strlen("a note for Bob\n"));
    EXPECT(memcmp(cloister_buffer_data(buffer), "a note for Bob\n", cloister_buffer_len(buffer)) == 0);
    cloister_buffer_free(buffer);
    cloister_event_free(note);

    /* Rooms, members, devices. */
    cloister_string_list *list = NULL;
    CHECK(bob, cloister_client_rooms(bob, &list));
    EXPECT(list_contains(list, room));
    cloister_string_list_free(list);
    CHECK(alice, cloister_client_room_members(alice, room, &list));
    EXPECT(cloister_string_list_len(list) == 2);
    EXPECT(list_contains(list, alice_id) && list_contains(list, bob_id));
    cloister_string_list_free(list);
    CHECK(alice, cloister_client_devices(alice, &list));
    EXPECT(list_contains(list, alice_device));
    cloister_string_list_free(list);

    /* History, decrypted, newest first. */
    cloister_event_list *history = NULL;
    CHECK(bob, cloister_client_room_messages(bob, room, NULL, 50, &history));
    int saw_hello = 0, saw_reply = 0;
    for (size_t i = 0; i < cloister_event_list_len(history); i++) {
        const cloister_event *event = cloister_event_list_get(history, i);
        if (cloister_event_get_kind(event) != CLOISTER_EVENT_MESSAGE) continue;
        EXPECT(cloister_event_encryption(event) == CLOISTER_ENCRYPTION_DECRYPTED);
        if (str_eq(cloister_event_body(event), hello)) saw_hello = 1;
        if (str_eq(cloister_event_body(event), "hi Alice")) saw_reply = saw_hello ? 2 : 1;
    }
    EXPECT(saw_hello && saw_reply == 1); /* the reply is newer: listed first */
    EXPECT(cloister_event_list_get(history, cloister_event_list_len(history)) == NULL);
    cloister_event_list_free(history);

    /* Bob logs in on a second device: Alice is warned that his keys changed. */
    cloister_client *bob2 = NULL;
    snprintf(path, sizeof path, "%s/bob2.db", dir);
    CHECK(NULL, cloister_client_new(url, path, "bob's other passphrase", &bob2));
    CHECK(bob2, cloister_client_login(bob2, argv[3], password, "bob's tablet"));
    inbox_wait(&inbox, NULL, "keys");
    cloister_client_free(bob2);

    /* Bob leaves; Alice's callback sees the membership change. */
    CHECK(bob, cloister_client_leave(bob, room));
    inbox_wait(&inbox, NULL, "leave");

    /* Shut down: stop sync (no callback runs after this), log Alice out. */
    CHECK(alice, cloister_client_sync_stop(alice));
    CHECK(alice, cloister_client_logout(alice));
    EXPECT(!cloister_client_is_logged_in(alice));
    CHECK(alice, cloister_client_close(alice));
    cloister_client_free(alice);
    cloister_client_free(bob); /* free closes (and stops sync) too */

    for (int i = 0; i < inbox.text_count; i++) free(inbox.texts[i]);
    pthread_cond_destroy(&inbox.changed);
    pthread_mutex_destroy(&inbox.lock);
    cloister_string_free(room);
    cloister_string_free(alice_id);
    cloister_string_free(bob_id);
    cloister_string_free(alice_device);
    printf("example_chat: ok\n");
    return 0;
}
