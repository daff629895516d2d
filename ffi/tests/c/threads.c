/*
 * threads.c: one client handle used from several threads at once, while
 * its sync runs; then history shows every message, decrypted.
 *
 * usage: threads HOMESERVER_URL USER PASSWORD WORK_DIR
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cloister.h"

#define THREADS 4
#define PER_THREAD 5

#define EXPECT(cond)                                                                            \
    do {                                                                                        \
        if (!(cond)) {                                                                          \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);                     \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

struct job {
    cloister_client *client;
    const char *room;
    int index;
    cloister_result result;
};

static void *sender(void *arg) {
    struct job *job = arg;
    job->result = CLOISTER_RESULT_OK;
    for (int i = 0; i < PER_THREAD && job->result == CLOISTER_RESULT_OK; i++) {
        char body[64];
        snprintf(body, sizeof body, "thread %d message %d", job->index, i);
        job->result = cloister_client_send_text(job->client, job->room, body, NULL);
        cloister_string_list *rooms = NULL;
        if (job->result == CLOISTER_RESULT_OK) job->result = cloister_client_rooms(job->client, &rooms);
        cloister_string_list_free(rooms);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOMESERVER_URL USER PASSWORD WORK_DIR\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/threads.db", argv[4]);
    cloister_client *client = NULL;
    EXPECT(cloister_client_new(argv[1], path, "pw", &client) == CLOISTER_RESULT_OK);
    EXPECT(cloister_client_login(client, argv[2], argv[3], NULL) == CLOISTER_RESULT_OK);
    char *room = NULL;
    EXPECT(cloister_client_create_room(client, "threads", NULL, 0, &room) == CLOISTER_RESULT_OK);
    EXPECT(cloister_client_sync_start(client) == CLOISTER_RESULT_OK);

    pthread_t threads[THREADS];
    struct job jobs[THREADS];
    for (int t = 0; t < THREADS; t++) {
        jobs[t] = (struct job){.client = client, .room = room, .index = t};
        EXPECT(pthread_create(&threads[t], NULL, sender, &jobs[t]) == 0);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        if (jobs[t].result != CLOISTER_RESULT_OK) {
            char *message = NULL;
            cloister_client_last_error(client, &message);
            fprintf(stderr, "thread %d: %s (%s)\n", t, cloister_result_str(jobs[t].result), message);
            cloister_string_free(message);
        }
        EXPECT(jobs[t].result == CLOISTER_RESULT_OK);
    }

    /* Every message is in the history, and decrypts. */
    cloister_event_list *history = NULL;
    EXPECT(cloister_client_room_messages(client, room, NULL, 100, &history) == CLOISTER_RESULT_OK);
    int seen[THREADS][PER_THREAD];
    memset(seen, 0, sizeof seen);
    for (size_t i = 0; i < cloister_event_list_len(history); i++) {
        const cloister_event *event = cloister_event_list_get(history, i);
        int t, m;
        if (cloister_event_get_kind(event) != CLOISTER_EVENT_MESSAGE) continue;
        EXPECT(cloister_event_encryption(event) == CLOISTER_ENCRYPTION_DECRYPTED);
        if (sscanf(cloister_event_body(event), "thread %d message %d", &t, &m) == 2 && t >= 0 &&
            t < THREADS && m >= 0 && m < PER_THREAD)
            seen[t][m]++;
    }
    for (int t = 0; t < THREADS; t++)
        for (int m = 0; m < PER_THREAD; m++) EXPECT(seen[t][m] == 1);
    cloister_event_list_free(history);

    cloister_string_free(room);
    cloister_client_free(client); /* stops sync */
    printf("threads: ok\n");
    return 0;
}
