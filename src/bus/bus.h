/* Publish/subscribe of meeting events (in-process today; Redis when several nodes share
 * meetings). Messages are pre-encoded JSON, shared by reference count: a message published once
 * reaches every subscriber of its meeting as the same bytes. */
#ifndef HK_BUS_H
#define HK_BUS_H

#include <uv.h>
#include "core/common.h"

typedef struct hk_bus_s hk_bus_t;
typedef struct hk_bus_sub_s hk_bus_sub_t;

/* An immutable, reference-counted message. `data` is NUL-terminated. */
typedef struct {
    int refcount; /* atomic */
    int64_t meeting_id;
    size_t len;
    char data[];
} hk_bus_msg_t;

/* Takes / drops a reference. Any thread. The last unref frees. */
hk_bus_msg_t *hk_bus_msg_ref(hk_bus_msg_t *m);
void hk_bus_msg_unref(hk_bus_msg_t *m);

/* Called on the loop thread for each message of the subscribed meeting, in publish order. The
 * callee may take a reference to keep the message. */
typedef void (*hk_bus_cb)(hk_bus_msg_t *msg, void *data);

/* Creates a bus bound to `loop`. NULL on allocation failure. Loop thread. */
hk_bus_t *hk_bus_new(uv_loop_t *loop);

/* Stops delivery and frees the bus after its async handle closed; pending messages are dropped.
 * Every subscription must have been removed. Loop thread. NULL-safe. */
void hk_bus_free(hk_bus_t *bus);

/* Subscribes to one meeting's messages. Loop thread. Returns 0 and *out, or HK_ENOMEM. */
int hk_bus_subscribe(hk_bus_t *bus, int64_t meeting_id, hk_bus_cb cb, void *data,
                     hk_bus_sub_t **out);

/* Ends a subscription; its callback is not called again. Loop thread. NULL-safe. */
void hk_bus_unsubscribe(hk_bus_sub_t *sub);

/*
 * Publishes json[0..len) to a meeting's subscribers. Any thread: from the loop thread delivery is
 * immediate (synchronous); from other threads the message is queued and delivered on the loop
 * thread in publish order. Returns 0 or HK_ENOMEM.
 */
int hk_bus_publish(hk_bus_t *bus, int64_t meeting_id, const char *json, size_t len);

/* Messages published so far (metrics). Any thread. */
uint64_t hk_bus_published(const hk_bus_t *bus);

#endif
