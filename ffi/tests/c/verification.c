/*
 * verification.c: two users verify each other's devices by emoji through
 * libcloister, as two apps would drive it: Alice asks, Bob's app sees the
 * request as an event and accepts, Alice starts SAS, both show the emoji,
 * compare them (here: the test compares the two screens) and confirm.
 * Afterwards each trusts the other's device and, through cross-signing,
 * the other's identity. Then Alice sets up recovery, and a new device of
 * hers restores her history's keys with the recovery key alone. Run by
 * ffi/tests/c_api.rs, also under valgrind.
 *
 * usage: verification HOMESERVER_URL ALICE BOB PASSWORD WORK_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cloister.h"

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

#define DEADLINE_S 180

static int str_eq(const char *a, const char *b) { return a != NULL && b != NULL && strcmp(a, b) == 0; }

/* Take one event off the client's queue (waiting up to 200 ms); returns it
 * if it is a verification event, else frees it and returns NULL. */
static cloister_event *next_verification_event(cloister_client *client) {
    cloister_event *event = NULL;
    cloister_result result = cloister_client_next_event(client, 200, &event);
    if (result == CLOISTER_RESULT_TIMEOUT) return NULL;
    CHECK(client, result);
    if (cloister_event_get_kind(event) == CLOISTER_EVENT_VERIFICATION) return event;
    cloister_event_free(event);
    return NULL;
}

/* Wait until the flow reaches `wanted` on `client`, draining its events. */
static void wait_phase(cloister_client *client, const char *flow, cloister_verification_phase wanted) {
    time_t deadline = time(NULL) + DEADLINE_S;
    while (time(NULL) < deadline) {
        cloister_verification_phase phase = CLOISTER_VERIFICATION_CANCELLED;
        cloister_result result = cloister_client_verification_phase(client, flow, &phase);
        if (result == CLOISTER_RESULT_OK && phase == wanted) return;
        if (result == CLOISTER_RESULT_OK && phase == CLOISTER_VERIFICATION_CANCELLED) {
            fprintf(stderr, "FAIL: flow %s was cancelled while waiting for phase %u\n", flow, wanted);
            exit(1);
        }
        cloister_event_free(next_verification_event(client));
    }
    fprintf(stderr, "FAIL: flow %s never reached phase %u\n", flow, wanted);
    exit(1);
}

/* Poll `client` (keeping its sync going) until `done` holds. */
static void wait_until(cloister_client *client, int (*done)(cloister_client *, const char *, const char *),
                       const char *user, const char *device, const char *what) {
    time_t deadline = time(NULL) + DEADLINE_S;
    while (time(NULL) < deadline) {
        if (done(client, user, device)) return;
        cloister_event_free(next_verification_event(client));
    }
    fprintf(stderr, "FAIL: never reached: %s\n", what);
    exit(1);
}

static int trust_is_cross_signed(cloister_client *client, const char *user, const char *device) {
    cloister_device_trust trust = CLOISTER_DEVICE_TRUST_BLOCKED;
    return cloister_client_device_trust(client, user, device, &trust) == CLOISTER_RESULT_OK &&
           trust == CLOISTER_DEVICE_TRUST_CROSS_SIGNED;
}

static int identity_verified(cloister_client *client, const char *user, const char *device) {
    (void)device;
    bool verified = false;
    CHECK(client, cloister_client_identity_verified(client, user, &verified));
    return verified;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOMESERVER_URL ALICE BOB PASSWORD WORK_DIR\n", argv[0]);
        return 2;
    }
    const char *url = argv[1], *password = argv[4], *dir = argv[5];
    char path[4096];
    CHECK(NULL, cloister_log_set_level(CLOISTER_LOG_WARN));

    cloister_client *alice = NULL, *bob = NULL;
    snprintf(path, sizeof path, "%s/alice.db", dir);
    CHECK(NULL, cloister_client_new(url, path, "alice's passphrase", &alice));
    snprintf(path, sizeof path, "%s/bob.db", dir);
    CHECK(NULL, cloister_client_new(url, path, "bob's passphrase", &bob));
    CHECK(alice, cloister_client_login(alice, argv[2], password, "verification (alice)"));
    CHECK(bob, cloister_client_login(bob, argv[3], password, "verification (bob)"));
    char *alice_id = NULL, *bob_id = NULL, *alice_device = NULL, *bob_device = NULL;
    CHECK(alice, cloister_client_user_id(alice, &alice_id));
    CHECK(bob, cloister_client_user_id(bob, &bob_id));
    CHECK(alice, cloister_client_device_id(alice, &alice_device));
    CHECK(bob, cloister_client_device_id(bob, &bob_device));

    /* Cross-signing: the first identity needs no password; a second
     * bootstrap without reset is refused and keeps the first. */
    CHECK(alice, cloister_client_bootstrap_cross_signing(alice, NULL, false));
    CHECK(bob, cloister_client_bootstrap_cross_signing(bob, password, false));
    EXPECT(cloister_client_bootstrap_cross_signing(alice, NULL, false) == CLOISTER_RESULT_INVALID_STATE);

    /* A shared room, so that each client tracks the other's devices. */
    CHECK(alice, cloister_client_sync_start(alice));
    CHECK(bob, cloister_client_sync_start(bob));
    const char *invitees[] = {bob_id};
    char *room = NULL, *joined = NULL;
    CHECK(alice, cloister_client_create_room(alice, "verification", invitees, 1, &room));
    time_t deadline = time(NULL) + DEADLINE_S;
    while (cloister_client_join(bob, room, &joined) != CLOISTER_RESULT_OK) {
        EXPECT(time(NULL) < deadline);
        cloister_event_free(next_verification_event(bob));
    }
    cloister_string_free(joined);
    wait_until(alice, trust_is_cross_signed, bob_id, bob_device, "Alice sees Bob's device cross-signed");
    wait_until(bob, trust_is_cross_signed, alice_id, alice_device, "Bob sees Alice's device cross-signed");
    EXPECT(!identity_verified(alice, bob_id, NULL));

    /* Alice asks; Bob's app learns of it from an event and accepts. */
    char *flow = NULL;
    CHECK(alice, cloister_client_request_verification(alice, bob_id, bob_device, &flow));
    cloister_event *request = NULL;
    deadline = time(NULL) + DEADLINE_S;
    while (request == NULL || !str_eq(cloister_event_body(request), "requested")) {
        EXPECT(time(NULL) < deadline);
        cloister_event_free(request);
        request = next_verification_event(bob);
    }
    EXPECT(str_eq(cloister_event_verification_flow(request), flow));
    EXPECT(str_eq(cloister_event_sender(request), alice_id));
    cloister_event_free(request);
    /* Too early to start or confirm: refused, the flow goes on. */
    EXPECT(cloister_client_verification_start_sas(alice, flow) == CLOISTER_RESULT_INVALID_STATE);
    EXPECT(cloister_client_verification_confirm(bob, flow) == CLOISTER_RESULT_INVALID_STATE);
    CHECK(bob, cloister_client_verification_accept(bob, flow));
    wait_phase(alice, flow, CLOISTER_VERIFICATION_READY);
    CHECK(alice, cloister_client_verification_start_sas(alice, flow));
    wait_phase(alice, flow, CLOISTER_VERIFICATION_SHOW_SAS);
    wait_phase(bob, flow, CLOISTER_VERIFICATION_SHOW_SAS);

    /* Both screens show the same emoji and numbers. */
    uint8_t alice_emoji[7], bob_emoji[7];
    uint16_t alice_numbers[3], bob_numbers[3];
    CHECK(alice, cloister_client_verification_sas(alice, flow, alice_emoji, alice_numbers));
    CHECK(bob, cloister_client_verification_sas(bob, flow, bob_emoji, bob_numbers));
    EXPECT(memcmp(alice_emoji, bob_emoji, sizeof alice_emoji) == 0);
    EXPECT(memcmp(alice_numbers, bob_numbers, sizeof alice_numbers) == 0);
    printf("emoji:");
    for (int i = 0; i < 7; i++) {
        EXPECT(alice_emoji[i] < 64);
        printf(" %s (%s)", cloister_sas_emoji_symbol(alice_emoji[i]), cloister_sas_emoji_name(alice_emoji[i]));
    }
    printf("\nnumbers: %u %u %u\n", alice_numbers[0], alice_numbers[1], alice_numbers[2]);
    for (int i = 0; i < 3; i++) EXPECT(alice_numbers[i] >= 1000 && alice_numbers[i] <= 9191);

    CHECK(alice, cloister_client_verification_confirm(alice, flow));
    CHECK(bob, cloister_client_verification_confirm(bob, flow));
    wait_phase(alice, flow, CLOISTER_VERIFICATION_DONE);
    wait_phase(bob, flow, CLOISTER_VERIFICATION_DONE);

    /* Trust: the devices, and each identity through the user-signing keys. */
    cloister_device_trust trust = CLOISTER_DEVICE_TRUST_BLOCKED;
    CHECK(alice, cloister_client_device_trust(alice, bob_id, bob_device, &trust));
    EXPECT(trust == CLOISTER_DEVICE_TRUST_VERIFIED);
    CHECK(bob, cloister_client_device_trust(bob, alice_id, alice_device, &trust));
    EXPECT(trust == CLOISTER_DEVICE_TRUST_VERIFIED);
    wait_until(alice, identity_verified, bob_id, NULL, "Alice verified Bob's identity");
    wait_until(bob, identity_verified, alice_id, NULL, "Bob verified Alice's identity");

    /* A finished flow takes no more steps; unknown flows and emoji. */
    EXPECT(cloister_client_verification_confirm(alice, flow) == CLOISTER_RESULT_INVALID_STATE);
    EXPECT(cloister_client_verification_sas(alice, flow, alice_emoji, alice_numbers) == CLOISTER_RESULT_INVALID_STATE);
    EXPECT(cloister_client_verification_sas(alice, flow, NULL, alice_numbers) == CLOISTER_RESULT_NULL_ARGUMENT);
    cloister_verification_phase phase;
    EXPECT(cloister_client_verification_phase(alice, "no-such-flow", &phase) == CLOISTER_RESULT_NOT_FOUND);
    EXPECT(cloister_client_verification_accept(alice, NULL) == CLOISTER_RESULT_NULL_ARGUMENT);
    EXPECT(str_eq(cloister_sas_emoji_symbol(0), "\xf0\x9f\x90\xb6")); /* 🐶 */
    EXPECT(str_eq(cloister_sas_emoji_name(63), "Pin"));
    EXPECT(cloister_sas_emoji_symbol(64) == NULL);

    /* The same in their room, as Element verifies people: Bob asks. */
    char *room_flow = NULL;
    CHECK(bob, cloister_client_request_verification_in_room(bob, room, alice_id, &room_flow));
    EXPECT(room_flow[0] == '$');
    wait_phase(alice, room_flow, CLOISTER_VERIFICATION_REQUESTED);
    CHECK(alice, cloister_client_verification_accept(alice, room_flow));
    wait_phase(bob, room_flow, CLOISTER_VERIFICATION_READY);
    CHECK(bob, cloister_client_verification_start_sas(bob, room_flow));
    wait_phase(alice, room_flow, CLOISTER_VERIFICATION_SHOW_SAS);
    wait_phase(bob, room_flow, CLOISTER_VERIFICATION_SHOW_SAS);
    CHECK(alice, cloister_client_verification_sas(alice, room_flow, alice_emoji, alice_numbers));
    CHECK(bob, cloister_client_verification_sas(bob, room_flow, bob_emoji, bob_numbers));
    EXPECT(memcmp(alice_emoji, bob_emoji, sizeof alice_emoji) == 0);
    CHECK(bob, cloister_client_verification_confirm(bob, room_flow));
    CHECK(alice, cloister_client_verification_confirm(alice, room_flow));
    wait_phase(alice, room_flow, CLOISTER_VERIFICATION_DONE);
    wait_phase(bob, room_flow, CLOISTER_VERIFICATION_DONE);
    cloister_string_free(room_flow);

    /* And by QR code: Alice shows hers, Bob's camera reads it. */
    char *qr_flow = NULL;
    CHECK(alice, cloister_client_request_verification(alice, bob_id, bob_device, &qr_flow));
    wait_phase(bob, qr_flow, CLOISTER_VERIFICATION_REQUESTED);
    CHECK(bob, cloister_client_verification_accept(bob, qr_flow));
    wait_phase(alice, qr_flow, CLOISTER_VERIFICATION_READY);
    cloister_buffer *code = NULL;
    CHECK(alice, cloister_client_verification_qr_code(alice, qr_flow, &code));
    EXPECT(cloister_buffer_len(code) > 6 && memcmp(cloister_buffer_data(code), "MATRIX", 6) == 0);
    EXPECT(cloister_client_verification_scan_qr_code(bob, qr_flow, NULL, 0) == CLOISTER_RESULT_NULL_ARGUMENT);
    CHECK(bob, cloister_client_verification_scan_qr_code(bob, qr_flow, cloister_buffer_data(code),
                                                         cloister_buffer_len(code)));
    cloister_buffer_free(code);
    wait_phase(alice, qr_flow, CLOISTER_VERIFICATION_QR_SCANNED);
    CHECK(alice, cloister_client_verification_confirm_qr_scanned(alice, qr_flow));
    wait_phase(alice, qr_flow, CLOISTER_VERIFICATION_DONE);
    wait_phase(bob, qr_flow, CLOISTER_VERIFICATION_DONE);
    cloister_string_free(qr_flow);

    /* Recovery: Alice's message before setup is readable on a new device
     * that has nothing but the recovery key. */
    char *event_id = NULL;
    CHECK(alice, cloister_client_send_text(alice, room, "kept in the backup", &event_id));
    char *recovery_key = NULL;
    CHECK(alice, cloister_client_recovery_setup(alice, NULL, &recovery_key));
    EXPECT(strncmp(recovery_key, "Es", 2) == 0);
    cloister_client *laptop = NULL;
    snprintf(path, sizeof path, "%s/laptop.db", dir);
    CHECK(NULL, cloister_client_new(url, path, "laptop passphrase", &laptop));
    CHECK(laptop, cloister_client_login(laptop, argv[2], password, "verification (laptop)"));
    EXPECT(cloister_client_recovery_restore(laptop, "EsTc not a recovery key", NULL) == CLOISTER_RESULT_CRYPTO);
    size_t restored = 0;
    CHECK(laptop, cloister_client_recovery_restore(laptop, recovery_key, &restored));
    EXPECT(restored >= 1);
    cloister_string_free(recovery_key);
    cloister_event_list *history = NULL;
    CHECK(laptop, cloister_client_room_messages(laptop, room, NULL, 50, &history));
    int found = 0;
    for (size_t i = 0; i < cloister_event_list_len(history); i++) {
        const cloister_event *event = cloister_event_list_get(history, i);
        if (str_eq(cloister_event_event_id(event), event_id)) {
            EXPECT(cloister_event_encryption(event) == CLOISTER_ENCRYPTION_DECRYPTED);
            EXPECT(str_eq(cloister_event_body(event), "kept in the backup"));
            /* A key from the backup cannot authenticate its sender. */
            EXPECT(cloister_event_sender_trust(event) == CLOISTER_SENDER_TRUST_FORWARDED_KEY);
            found = 1;
        }
    }
    EXPECT(found);
    cloister_event_list_free(history);
    cloister_string_free(event_id);
    cloister_client_free(laptop);

    cloister_client_free(alice);
    cloister_client_free(bob);
    cloister_string_free(flow);
    cloister_string_free(room);
    cloister_string_free(alice_id);
    cloister_string_free(bob_id);
    cloister_string_free(alice_device);
    cloister_string_free(bob_device);
    printf("verification: ok\n");
    return 0;
}
