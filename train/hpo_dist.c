/* hpo_dist.c - see hpo_dist.h. */
#include "train/hpo_dist.h"

#include <time.h>

#include "dist/dist.h"
#include "engine/ote.h"

static int hpo_dist_send(void *ctx, int dest, const char *text, size_t len) {
    (void)ctx;
    return dist_send(text, len, dest, dest == 0 ? HPO_DIST_TAG_RESULT : HPO_DIST_TAG_ORDER);
}

static int hpo_dist_recv(void *ctx, int block, int *src, char **text) {
    (void)ctx;
    int tag = dist_rank() == 0 ? HPO_DIST_TAG_RESULT : HPO_DIST_TAG_ORDER;
    while (!dist_probe_any(tag)) {
        if (!block) return 0;
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    void *d = NULL;
    size_t len = 0;
    CHECK(dist_recv_any(&d, &len, src, tag));
    *text = d;
    return 1;
}

void hpo_dist_link(hpo_link *l) {
    l->workers = dist_size() - 1;
    l->send = hpo_dist_send;
    l->recv = hpo_dist_recv;
    l->ctx = NULL;
}
