/* In-process bus: a subscriber list per meeting (loop thread) and a mutex-protected inbox,
 * drained by a uv_async, for messages published from worker threads. */
#include "bus/bus.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct hk_bus_sub_s {
    hk_bus_t *bus;
    int64_t meeting_id;
    hk_bus_cb cb;
    void *data;
    hk_bus_sub_t *next; /* in its bucket */
};

#define NBUCKETS 1024

typedef struct inbox_item_s {
    hk_bus_msg_t *msg;
    struct inbox_item_s *next;
} inbox_item_t;

struct hk_bus_s {
    uv_loop_t *loop;
    uv_thread_t loop_thread;
    uv_async_t async;
    hk_bus_sub_t *buckets[NBUCKETS]; /* loop thread */
    pthread_mutex_t mu;              /* guards the inbox */
    inbox_item_t *head, *tail;
    _Atomic uint64_t published;
    int delivering; /* loop thread: re-entrancy depth, for safe unsubscribe during delivery */
    bool dirty;     /* a subscription was removed during delivery */
};

hk_bus_msg_t *hk_bus_msg_ref(hk_bus_msg_t *m)
{
    atomic_fetch_add((_Atomic int *)&m->refcount, 1);
    return m;
}

void hk_bus_msg_unref(hk_bus_msg_t *m)
{
    if (m && atomic_fetch_sub((_Atomic int *)&m->refcount, 1) == 1)
        free(m);
}

static size_t bucket(int64_t id)
{
    return (size_t)((uint64_t)id % NBUCKETS);
}

static void deliver(hk_bus_t *bus, hk_bus_msg_t *msg)
{
    bus->delivering++;
    for (hk_bus_sub_t *s = bus->buckets[bucket(msg->meeting_id)]; s; s = s->next)
        if (s->cb && s->meeting_id == msg->meeting_id)
            s->cb(msg, s->data);
    bus->delivering--;
    if (bus->delivering == 0 && bus->dirty) {
        /* Unsubscribed during delivery: unlink and free now that no iteration is running. */
        for (size_t b = 0; b < NBUCKETS; b++) {
            hk_bus_sub_t **pp = &bus->buckets[b];
            while (*pp) {
                if (!(*pp)->cb) {
                    hk_bus_sub_t *dead = *pp;
                    *pp = dead->next;
                    free(dead);
                } else {
                    pp = &(*pp)->next;
                }
            }
        }
        bus->dirty = false;
    }
}

static void async_cb(uv_async_t *a)
{
    hk_bus_t *bus = a->data;
    pthread_mutex_lock(&bus->mu);
    inbox_item_t *it = bus->head;
    bus->head = bus->tail = NULL;
    pthread_mutex_unlock(&bus->mu);
    while (it) {
        inbox_item_t *next = it->next;
        deliver(bus, it->msg);
        hk_bus_msg_unref(it->msg);
        free(it);
        it = next;
    }
}

hk_bus_t *hk_bus_new(uv_loop_t *loop)
{
    hk_bus_t *bus = calloc(1, sizeof(*bus));
    if (!bus)
        return NULL;
    bus->loop = loop;
    bus->loop_thread = uv_thread_self();
    pthread_mutex_init(&bus->mu, NULL);
    if (uv_async_init(loop, &bus->async, async_cb) != 0) {
        pthread_mutex_destroy(&bus->mu);
        free(bus);
        return NULL;
    }
    bus->async.data = bus;
    return bus;
}

static void close_cb(uv_handle_t *h)
{
    hk_bus_t *bus = h->data;
    inbox_item_t *it = bus->head;
    while (it) {
        inbox_item_t *next = it->next;
        hk_bus_msg_unref(it->msg);
        free(it);
        it = next;
    }
    for (size_t b = 0; b < NBUCKETS; b++) {
        while (bus->buckets[b]) {
            hk_bus_sub_t *s = bus->buckets[b];
            bus->buckets[b] = s->next;
            free(s);
        }
    }
    pthread_mutex_destroy(&bus->mu);
    free(bus);
}

void hk_bus_free(hk_bus_t *bus)
{
    if (!bus)
        return;
    uv_close((uv_handle_t *)&bus->async, close_cb);
}

int hk_bus_subscribe(hk_bus_t *bus, int64_t meeting_id, hk_bus_cb cb, void *data,
                     hk_bus_sub_t **out)
{
    hk_bus_sub_t *s = calloc(1, sizeof(*s));
    if (!s)
        return HK_ENOMEM;
    s->bus = bus;
    s->meeting_id = meeting_id;
    s->cb = cb;
    s->data = data;
    s->next = bus->buckets[bucket(meeting_id)];
    bus->buckets[bucket(meeting_id)] = s;
    *out = s;
    return 0;
}

void hk_bus_unsubscribe(hk_bus_sub_t *sub)
{
    if (!sub)
        return;
    hk_bus_t *bus = sub->bus;
    if (bus->delivering) {
        sub->cb = NULL;
        bus->dirty = true;
        return;
    }
    for (hk_bus_sub_t **pp = &bus->buckets[bucket(sub->meeting_id)]; *pp; pp = &(*pp)->next) {
        if (*pp == sub) {
            *pp = sub->next;
            break;
        }
    }
    free(sub);
}

int hk_bus_publish(hk_bus_t *bus, int64_t meeting_id, const char *json, size_t len)
{
    hk_bus_msg_t *m = malloc(sizeof(*m) + len + 1);
    if (!m)
        return HK_ENOMEM;
    m->refcount = 1;
    m->meeting_id = meeting_id;
    m->len = len;
    memcpy(m->data, json, len);
    m->data[len] = '\0';
    atomic_fetch_add(&bus->published, 1);
    uv_thread_t self = uv_thread_self();
    if (uv_thread_equal(&self, &bus->loop_thread)) {
        /* Loop-thread publishers get synchronous delivery, but behind anything queued from
         * workers, so that order across threads follows publish order. */
        async_cb(&bus->async);
        deliver(bus, m);
        hk_bus_msg_unref(m);
        return 0;
    }
    inbox_item_t *it = malloc(sizeof(*it));
    if (!it) {
        free(m);
        return HK_ENOMEM;
    }
    it->msg = m;
    it->next = NULL;
    pthread_mutex_lock(&bus->mu);
    if (bus->tail)
        bus->tail->next = it;
    else
        bus->head = it;
    bus->tail = it;
    pthread_mutex_unlock(&bus->mu);
    uv_async_send(&bus->async);
    return 0;
}

uint64_t hk_bus_published(const hk_bus_t *bus)
{
    return atomic_load(&((hk_bus_t *)bus)->published);
}
