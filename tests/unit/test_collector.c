/* Unit tests for the bus and the collector: change-only publishing, stable ids, speakers,
 * batched durable writes, snapshots. Uses a real SQLite store in a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "bus/bus.h"
#include "core/log.h"
#include "pipeline/collector.h"

static char root[64];
static hk_store_t *store;
static int64_t user_id;

typedef struct {
    int n;
    char *last;
} sink_t;

static void sink_cb(hk_bus_msg_t *msg, void *data)
{
    sink_t *s = data;
    s->n++;
    free(s->last);
    s->last = strdup(msg->data);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    hk_log_init(HK_LOG_ERROR, NULL);
    snprintf(root, sizeof(root), "/tmp/hark-collector-test-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    char err[200];
    if (hk_store_open(root, 2, &store, err, sizeof(err)))
        return -1;
    hk_user_t u;
    bool created;
    if (hk_store_user_upsert(store, "c@example.com", NULL, 100, NULL, &u, &created))
        return -1;
    user_id = u.id;
    hk_user_dispose(&u);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    hk_store_close(store);
    return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int64_t new_meeting(const char *native, hk_meeting_t *out)
{
    hk_meeting_t in = {0};
    in.user_id = user_id;
    in.platform = "stream";
    in.native_meeting_id = (char *)native;
    in.status = "active";
    in.start_time = 1700000000000;
    assert_int_equal(hk_store_meeting_create(store, &in, -1, out), 0);
    return out->id;
}

static void run_for(uv_loop_t *loop, uint64_t ms)
{
    uint64_t end = uv_now(loop) + ms;
    while (uv_now(loop) < end) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(5000);
        uv_update_time(loop);
    }
}

static void test_bus_delivers_shared_and_cross_thread(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    hk_bus_t *bus = hk_bus_new(&loop);
    sink_t a = {0}, b = {0}, other = {0};
    hk_bus_sub_t *sa, *sb, *so;
    assert_int_equal(hk_bus_subscribe(bus, 7, sink_cb, &a, &sa), 0);
    assert_int_equal(hk_bus_subscribe(bus, 7, sink_cb, &b, &sb), 0);
    assert_int_equal(hk_bus_subscribe(bus, 8, sink_cb, &other, &so), 0);
    hk_bus_publish(bus, 7, "{\"x\":1}", 7);
    assert_int_equal(a.n, 1);
    assert_int_equal(b.n, 1);
    assert_int_equal(other.n, 0);
    assert_string_equal(a.last, "{\"x\":1}");
    hk_bus_unsubscribe(sb);
    hk_bus_publish(bus, 7, "{\"x\":2}", 7);
    assert_int_equal(a.n, 2);
    assert_int_equal(b.n, 1);
    hk_bus_unsubscribe(sa);
    hk_bus_unsubscribe(so);
    hk_bus_free(bus);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(a.last);
    free(b.last);
}

static void test_collector_publishes_changes_and_stores(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    hk_bus_t *bus = hk_bus_new(&loop);
    hk_collector_config_t cfg = {.flush_interval_ms = 50};
    hk_collector_t *c = hk_collector_new(&loop, store, bus, &cfg);
    hk_meeting_t m;
    int64_t mid = new_meeting("col-1", &m);
    sink_t sink = {0};
    hk_bus_sub_t *sub;
    hk_bus_subscribe(bus, mid, sink_cb, &sink, &sub);
    hk_live_t *lt;
    assert_int_equal(hk_collector_attach(c, &m, &lt), 0);
    assert_int_equal(hk_live_t0(lt), m.start_time);

    hk_collector_speaker(lt, "Alice", 0.5, true);
    hk_seg_update_t u = {
        .session_id = 3, .seq = 1, .start = 1.0, .end = 2.0, .text = "hello", .language = "en"};
    hk_collector_put(lt, &u, 1);
    assert_int_equal(sink.n, 1);
    assert_non_null(strstr(sink.last, "\"type\":\"transcript.mutable\""));
    char want_id[64];
    snprintf(want_id, sizeof(want_id), "\"segment_id\":\"%lld:3:1\"", (long long)mid);
    assert_non_null(strstr(sink.last, want_id));
    assert_non_null(strstr(sink.last, "\"speaker\":\"Alice\""));
    assert_non_null(strstr(sink.last, "\"completed\":false"));

    /* The same update again changes nothing and publishes nothing. */
    hk_collector_put(lt, &u, 1);
    assert_int_equal(sink.n, 1);

    /* Not stored while mutable. */
    run_for(&loop, 150);
    int64_t count = -1;
    hk_store_segments_count(store, mid, &count);
    assert_int_equal(count, 0);

    u.text = "hello world";
    u.end = 2.5;
    u.completed = true;
    hk_collector_put(lt, &u, 1);
    assert_int_equal(sink.n, 2);
    assert_non_null(strstr(sink.last, "\"completed\":true"));
    assert_non_null(strstr(sink.last, want_id));

    /* Snapshot sees it before the flush. */
    hk_segment_t *v;
    bool *done;
    size_t n;
    assert_int_equal(hk_collector_snapshot(c, mid, &v, &done, &n), 0);
    assert_int_equal(n, 1);
    assert_true(done[0]);
    assert_string_equal(v[0].text, "hello world");
    hk_store_free_segments(v, n);
    free(done);

    run_for(&loop, 200);
    hk_store_segments_count(store, mid, &count);
    assert_int_equal(count, 1);
    assert_int_equal(hk_store_segments_list(store, mid, &v, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(v[0].text, "hello world");
    assert_string_equal(v[0].speaker, "Alice");
    assert_true(v[0].end > 2.4 && v[0].end < 2.6);
    hk_store_free_segments(v, n);
    /* Stored completed segments leave the live set. */
    assert_int_equal(hk_collector_snapshot(c, mid, &v, &done, &n), 0);
    assert_int_equal(n, 0);

    hk_collector_release(lt);
    hk_bus_unsubscribe(sub);
    hk_meeting_dispose(&m);
    hk_collector_free(c);
    hk_bus_free(bus);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    free(sink.last);
}

static void test_speaker_by_largest_overlap_and_session_completion(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    hk_collector_config_t cfg = {.flush_interval_ms = 50};
    hk_collector_t *c = hk_collector_new(&loop, store, NULL, &cfg);
    hk_meeting_t m;
    int64_t mid = new_meeting("col-2", &m);
    hk_live_t *lt;
    hk_collector_attach(c, &m, &lt);
    hk_collector_speaker(lt, "Bob", 0.0, true);
    hk_collector_speaker(lt, "Bob", 1.2, false);
    hk_collector_speaker(lt, "Carol", 1.2, true);
    hk_seg_update_t u[2] = {
        {.session_id = 1, .seq = 1, .start = 1.0, .end = 3.0, .text = "mostly carol"},
        {.session_id = 1, .seq = 2, .start = 0.1, .end = 1.1, .text = "bob", .speaker = "Dan"},
    };
    hk_collector_put(lt, u, 2);
    hk_segment_t *v;
    bool *done;
    size_t n;
    hk_collector_snapshot(c, mid, &v, &done, &n);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v[i].text, "mostly carol") == 0)
            assert_string_equal(v[i].speaker, "Carol");
        else
            assert_string_equal(v[i].speaker, "Dan"); /* given by the source: kept */
        assert_false(done[i]);
    }
    hk_store_free_segments(v, n);
    free(done);
    hk_collector_complete_session(lt, 1);
    hk_collector_release(lt);
    run_for(&loop, 200);
    int64_t count = 0;
    hk_store_segments_count(store, mid, &count);
    assert_int_equal(count, 2);
    hk_meeting_dispose(&m);
    hk_collector_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* The speaker of a mutable segment (snapshot) with the given text. */
static char *speaker_of(hk_collector_t *c, int64_t mid, const char *text)
{
    hk_segment_t *v;
    bool *done;
    size_t n;
    char *out = NULL;
    assert_int_equal(hk_collector_snapshot(c, mid, &v, &done, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].text, text) == 0)
            out = v[i].speaker ? strdup(v[i].speaker) : strdup("(none)");
    hk_store_free_segments(v, n);
    free(done);
    assert_non_null(out);
    return out;
}

static void put_one(hk_live_t *lt, uint32_t seq, double start, double end, const char *text)
{
    hk_seg_update_t u = {.session_id = 1, .seq = seq, .start = start, .end = end, .text = text};
    hk_collector_put(lt, &u, 1);
}

/* Many people speaking at once (each a distinct name), ties, intervals that end before the
 * meeting's time 0, and a speaker who starts again. */
static void test_speaker_many_names_ties_and_negative_times(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    hk_collector_config_t cfg = {.flush_interval_ms = 50, .max_speaker_events = 5000};
    hk_collector_t *c = hk_collector_new(&loop, store, NULL, &cfg);
    hk_meeting_t m;
    int64_t mid = new_meeting("col-spk", &m);
    hk_live_t *lt;
    hk_collector_attach(c, &m, &lt);

    /* an interval before time 0 is over: it must not count as "still speaking" later */
    hk_collector_speaker(lt, "Early", -2.0, true);
    hk_collector_speaker(lt, "Early", -1.0, false);
    /* 3000 people talking over [10, 11] ... */
    char name[32];
    for (int i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "P%04d", i);
        hk_collector_speaker(lt, name, 10.0, true);
        hk_collector_speaker(lt, name, 11.0, false);
    }
    /* ... and one of them (P1234) also over [11, 12] */
    hk_collector_speaker(lt, "P1234", 11.0, true);
    hk_collector_speaker(lt, "P1234", 12.0, false);
    put_one(lt, 1, 10.0, 12.0, "most");
    char *who = speaker_of(c, mid, "most");
    assert_string_equal(who, "P1234");
    free(who);
    /* all 3000 overlap [10, 11] equally: whoever spoke first */
    put_one(lt, 2, 10.2, 10.8, "tie");
    who = speaker_of(c, mid, "tie");
    assert_string_equal(who, "P0000");
    free(who);
    /* nobody is talking at 60 s: no speaker (Early's interval ended at -1 s) */
    put_one(lt, 3, 60.0, 62.0, "nobody");
    who = speaker_of(c, mid, "nobody");
    assert_string_equal(who, "(none)");
    free(who);
    /* an open interval reaches later segments; a start again for an earlier name works */
    hk_collector_speaker(lt, "Early", 70.0, true);
    put_one(lt, 4, 71.0, 72.0, "early again");
    who = speaker_of(c, mid, "early again");
    assert_string_equal(who, "Early");
    free(who);
    /* an end for a name that never started changes nothing */
    hk_collector_speaker(lt, "Ghost", 71.5, false);
    who = speaker_of(c, mid, "early again");
    assert_string_equal(who, "Early");
    free(who);

    hk_collector_release(lt);
    hk_meeting_dispose(&m);
    hk_collector_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_free_flushes_pending(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    hk_collector_config_t cfg = {.flush_interval_ms = 1000};
    hk_collector_t *c = hk_collector_new(&loop, store, NULL, &cfg);
    hk_meeting_t m;
    int64_t mid = new_meeting("col-3", &m);
    hk_live_t *lt;
    hk_collector_attach(c, &m, &lt);
    hk_seg_update_t u = {
        .session_id = 1, .seq = 1, .start = 0, .end = 1, .text = "bye", .completed = true};
    hk_collector_put(lt, &u, 1);
    hk_collector_release(lt);
    hk_collector_free(c); /* before any tick: must write synchronously */
    uv_run(&loop, UV_RUN_DEFAULT);
    int64_t count = 0;
    hk_store_segments_count(store, mid, &count);
    assert_int_equal(count, 1);
    hk_meeting_dispose(&m);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Without a store (hark transcribe) completed segments are kept, not evicted by flush ticks. */
static void test_without_store_keeps_completed(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    hk_collector_config_t cfg = {.flush_interval_ms = 20};
    hk_collector_t *c = hk_collector_new(&loop, NULL, NULL, &cfg);
    hk_meeting_t m = {.id = 1, .platform = "file", .native_meeting_id = "a.wav"};
    hk_live_t *lt;
    assert_int_equal(hk_collector_attach(c, &m, &lt), 0);
    hk_seg_update_t u[2] = {
        {.session_id = 1, .seq = 0, .start = 0, .end = 1, .text = "one", .completed = true},
        {.session_id = 1, .seq = 1, .start = 1, .end = 2, .text = "two"},
    };
    assert_int_equal(hk_collector_put(lt, u, 2), 0);
    hk_collector_complete_session(lt, 1);
    run_for(&loop, 100); /* several ticks */
    hk_segment_t *v;
    bool *done;
    size_t n;
    assert_int_equal(hk_collector_snapshot(c, 1, &v, &done, &n), 0);
    assert_int_equal(n, 2);
    assert_true(done[0] && done[1]);
    hk_store_free_segments(v, n);
    free(done);
    hk_collector_stats_t st;
    hk_collector_stats(c, &st);
    assert_int_equal(st.segments_stored, 0);
    assert_int_equal(st.store_failures, 0);
    hk_collector_release(lt);
    hk_collector_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bus_delivers_shared_and_cross_thread),
        cmocka_unit_test(test_collector_publishes_changes_and_stores),
        cmocka_unit_test(test_speaker_by_largest_overlap_and_session_completion),
        cmocka_unit_test(test_speaker_many_names_ties_and_negative_times),
        cmocka_unit_test(test_free_flushes_pending),
        cmocka_unit_test(test_without_store_keeps_completed),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
