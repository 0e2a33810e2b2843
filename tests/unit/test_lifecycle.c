/* Unit tests for src/pipeline/lifecycle: the transition table, the initial data object, and
 * transitions recorded in a real SQLite store in a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "core/log.h"
#include "core/timeutil.h"
#include "pipeline/lifecycle.h"

static char root[64]; /* mkdtemp directory holding the store */
static hk_store_t *store;
static int64_t user_id;
static int native_seq;

/* ---- the table (pure) ---- */

static const char *const statuses[] = {
    "requested", "joining", "awaiting_admission", "active", "stopping", "completed", "failed"};

static void test_status_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
        assert_true(hk_lifecycle_status_valid(statuses[i]));
    assert_false(hk_lifecycle_status_valid(""));
    assert_false(hk_lifecycle_status_valid("ACTIVE"));
    assert_false(hk_lifecycle_status_valid("bogus"));
    assert_false(hk_lifecycle_status_valid("activ"));
}

static void test_allowed_forward(void **state)
{
    (void)state;
    assert_true(hk_lifecycle_allowed("requested", "joining"));
    assert_true(hk_lifecycle_allowed("requested", "awaiting_admission"));
    assert_true(hk_lifecycle_allowed("requested", "active"));
    assert_true(hk_lifecycle_allowed("joining", "awaiting_admission"));
    assert_true(hk_lifecycle_allowed("joining", "active"));
    assert_true(hk_lifecycle_allowed("awaiting_admission", "active"));

    /* Never backwards, never to itself. */
    assert_false(hk_lifecycle_allowed("active", "joining"));
    assert_false(hk_lifecycle_allowed("active", "requested"));
    assert_false(hk_lifecycle_allowed("active", "awaiting_admission"));
    assert_false(hk_lifecycle_allowed("awaiting_admission", "joining"));
    assert_false(hk_lifecycle_allowed("joining", "requested"));
    assert_false(hk_lifecycle_allowed("requested", "requested"));
    assert_false(hk_lifecycle_allowed("active", "active"));
}

static void test_allowed_stopping_and_terminal(void **state)
{
    (void)state;
    /* Every non-terminal status may stop, complete or fail... */
    const char *nonterminal[] = {"requested", "joining", "awaiting_admission", "active",
                                 "stopping"};
    for (size_t i = 0; i < sizeof(nonterminal) / sizeof(nonterminal[0]); i++) {
        assert_true(hk_lifecycle_allowed(nonterminal[i], "completed"));
        assert_true(hk_lifecycle_allowed(nonterminal[i], "failed"));
        if (strcmp(nonterminal[i], "stopping") != 0)
            assert_true(hk_lifecycle_allowed(nonterminal[i], "stopping"));
    }
    /* ...but stopping does not stop again or go back. */
    assert_false(hk_lifecycle_allowed("stopping", "stopping"));
    assert_false(hk_lifecycle_allowed("stopping", "active"));
    assert_false(hk_lifecycle_allowed("stopping", "requested"));
    assert_false(hk_lifecycle_allowed("stopping", "joining"));

    /* Nothing leaves a terminal status. */
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++) {
        assert_false(hk_lifecycle_allowed("completed", statuses[i]));
        assert_false(hk_lifecycle_allowed("failed", statuses[i]));
    }
}

static void test_allowed_unknown(void **state)
{
    (void)state;
    assert_false(hk_lifecycle_allowed("bogus", "failed"));
    assert_false(hk_lifecycle_allowed("bogus", "stopping"));
    assert_false(hk_lifecycle_allowed("requested", "bogus"));
    assert_false(hk_lifecycle_allowed("active", ""));
    assert_false(hk_lifecycle_allowed("", "active"));
    assert_false(hk_lifecycle_allowed("Active", "completed"));
    assert_false(hk_lifecycle_allowed("requested", "ACTIVE"));
}

static void test_initial_data(void **state)
{
    (void)state;
    json_t *d = hk_lifecycle_initial_data("en");
    assert_true(json_is_object(d));
    assert_int_equal(json_object_size(d), 7);
    assert_true(json_is_null(json_object_get(d, "name")));
    assert_true(json_is_null(json_object_get(d, "notes")));
    assert_true(json_is_null(json_object_get(d, "completion_reason")));
    assert_true(json_is_null(json_object_get(d, "failure_stage")));
    json_t *p = json_object_get(d, "participants");
    assert_true(json_is_array(p));
    assert_int_equal(json_array_size(p), 0);
    json_t *st = json_object_get(d, "status_transition");
    assert_true(json_is_array(st));
    assert_int_equal(json_array_size(st), 0);
    json_t *langs = json_object_get(d, "languages");
    assert_true(json_is_array(langs));
    assert_int_equal(json_array_size(langs), 1);
    assert_string_equal(json_string_value(json_array_get(langs, 0)), "en");
    json_decref(d);

    d = hk_lifecycle_initial_data(NULL);
    langs = json_object_get(d, "languages");
    assert_true(json_is_array(langs));
    assert_int_equal(json_array_size(langs), 0);
    assert_int_equal(json_object_size(d), 7);
    json_decref(d);
}

/* ---- transitions in a real store ---- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    hk_log_init(HK_LOG_ERROR, NULL); /* transitions log at info */
    snprintf(root, sizeof(root), "/tmp/hark-lifecycle-test-XXXXXX");
    if (!mkdtemp(root))
        return -1;
    char dir[128], err[256];
    snprintf(dir, sizeof(dir), "%s/data", root);
    if (hk_store_open(dir, 2, &store, err, sizeof(err)) != 0) {
        fprintf(stderr, "store open failed: %s\n", err);
        return -1;
    }
    hk_user_t u;
    bool created;
    if (hk_store_user_upsert(store, "lifecycle@example.com", NULL, 100, NULL, &u, &created) != 0)
        return -1;
    user_id = u.id;
    hk_user_dispose(&u);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    hk_store_close(store);
    store = NULL;
    return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* A new meeting in status "requested" with the initial data; returns its id. */
static int64_t new_meeting(void)
{
    char native[32];
    snprintf(native, sizeof(native), "abc-defg-%03d", ++native_seq);
    hk_meeting_t in = {0}, out;
    in.user_id = user_id;
    in.platform = "google_meet";
    in.native_meeting_id = native;
    in.status = "requested";
    in.data = hk_lifecycle_initial_data("en");
    assert_int_equal(hk_store_meeting_create(store, &in, -1, &out), 0);
    json_decref(in.data);
    assert_string_equal(out.status, "requested");
    int64_t id = out.id;
    hk_meeting_dispose(&out);
    return id;
}

/* Checks one recorded transition entry. */
static void check_entry(json_t *e, const char *from, const char *to, const char *reason,
                        const char *source, int64_t t0, int64_t t1)
{
    assert_true(json_is_object(e));
    assert_int_equal(json_object_size(e), 5);
    assert_string_equal(json_string_value(json_object_get(e, "from")), from);
    assert_string_equal(json_string_value(json_object_get(e, "to")), to);
    if (reason)
        assert_string_equal(json_string_value(json_object_get(e, "reason")), reason);
    else
        assert_true(json_is_null(json_object_get(e, "reason")));
    assert_string_equal(json_string_value(json_object_get(e, "source")), source);
    const char *ts = json_string_value(json_object_get(e, "timestamp"));
    assert_non_null(ts);
    int64_t ms = 0;
    assert_int_equal(hk_time_parse_iso8601(ts, &ms), 0);
    assert_in_range(ms, t0, t1); /* taken during the call: ordering, not speed */
}

static void test_transition_to_active_then_failed(void **state)
{
    (void)state;
    int64_t id = new_meeting();
    hk_meeting_t m;

    int64_t t0 = hk_time_now_ms();
    assert_int_equal(hk_lifecycle_transition(store, id, "active", "joined", HK_SOURCE_BOT, &m), 0);
    int64_t t1 = hk_time_now_ms();
    assert_int_equal(m.id, id);
    assert_string_equal(m.status, "active");
    assert_in_range(m.start_time, t0, t1);
    assert_int_equal(m.end_time, 0);
    json_t *list = json_object_get(m.data, "status_transition");
    assert_int_equal(json_array_size(list), 1);
    check_entry(json_array_get(list, 0), "requested", "active", "joined", "bot", t0, t1);
    assert_true(json_is_null(json_object_get(m.data, "completion_reason")));
    assert_true(json_is_null(json_object_get(m.data, "failure_stage")));
    /* The rest of the data object is kept. */
    assert_string_equal(json_string_value(json_array_get(json_object_get(m.data, "languages"), 0)),
                        "en");
    int64_t start = m.start_time;
    hk_meeting_dispose(&m);

    int64_t t2 = hk_time_now_ms();
    assert_int_equal(
        hk_lifecycle_transition(store, id, "failed", "bot crashed", HK_SOURCE_SYSTEM, &m), 0);
    int64_t t3 = hk_time_now_ms();
    assert_string_equal(m.status, "failed");
    assert_int_equal(m.start_time, start); /* unchanged */
    assert_in_range(m.end_time, t2, t3);
    assert_string_equal(json_string_value(json_object_get(m.data, "completion_reason")),
                        "bot crashed");
    assert_string_equal(json_string_value(json_object_get(m.data, "failure_stage")), "active");
    list = json_object_get(m.data, "status_transition");
    assert_int_equal(json_array_size(list), 2);
    check_entry(json_array_get(list, 0), "requested", "active", "joined", "bot", t0, t1);
    check_entry(json_array_get(list, 1), "active", "failed", "bot crashed", "system", t2, t3);
    hk_meeting_dispose(&m);

    /* What was returned is what was stored. */
    assert_int_equal(hk_store_meeting_get(store, -1, id, &m), 0);
    assert_string_equal(m.status, "failed");
    assert_int_equal(m.start_time, start);
    assert_int_equal(json_array_size(json_object_get(m.data, "status_transition")), 2);
    assert_string_equal(json_string_value(json_object_get(m.data, "failure_stage")), "active");
    hk_meeting_dispose(&m);
}

static void test_failed_before_start(void **state)
{
    (void)state;
    int64_t id = new_meeting();
    hk_meeting_t m;
    assert_int_equal(hk_lifecycle_transition(store, id, "joining", NULL, HK_SOURCE_BOT, NULL), 0);
    assert_int_equal(
        hk_lifecycle_transition(store, id, "failed", "admission timeout", HK_SOURCE_BOT, &m), 0);
    assert_string_equal(m.status, "failed");
    assert_int_equal(m.start_time, 0); /* never active */
    assert_true(m.end_time > 0);
    assert_string_equal(json_string_value(json_object_get(m.data, "failure_stage")), "joining");
    json_t *list = json_object_get(m.data, "status_transition");
    assert_int_equal(json_array_size(list), 2);
    assert_true(json_is_null(json_object_get(json_array_get(list, 0), "reason")));
    hk_meeting_dispose(&m);
}

/* Options: an explicit start_time for the first move to active, and data keys written by the
 * transition itself (and not at all when the transition is refused). */
static void test_transition_options(void **state)
{
    (void)state;
    int64_t id = new_meeting();
    hk_meeting_t m;
    hk_transition_opts_t o = {.start_ms = 1700000000123};
    assert_int_equal(hk_lifecycle_transition_ex(store, id, "active", NULL, HK_SOURCE_BOT, &o, &m),
                     0);
    assert_int_equal(m.start_time, 1700000000123);
    hk_meeting_dispose(&m);

    o = (hk_transition_opts_t){.start_ms = 5, .data_set = json_pack("{s:{s:i}}", "bot_exit",
                                                                       "exit_status", 3)};
    assert_non_null(o.data_set);
    assert_int_equal(hk_lifecycle_transition_ex(store, id, "failed", "bot_crashed",
                                                HK_SOURCE_SYSTEM, &o, &m),
                     0);
    assert_int_equal(m.start_time, 1700000000123); /* only the first move to active sets it */
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m.data, "bot_exit"),
                                                        "exit_status")),
                     3);
    assert_int_equal(json_array_size(json_object_get(m.data, "status_transition")), 2);
    hk_meeting_dispose(&m);

    /* Refused (terminal): nothing of it is written. */
    json_object_set_new(json_object_get(o.data_set, "bot_exit"), "exit_status", json_integer(9));
    assert_int_equal(hk_lifecycle_transition_ex(store, id, "completed", NULL, HK_SOURCE_SYSTEM,
                                                &o, &m),
                     HK_ESTATE);
    hk_meeting_dispose(&m);
    json_decref(o.data_set);
    assert_int_equal(hk_store_meeting_get(store, -1, id, &m), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(m.data, "bot_exit"),
                                                        "exit_status")),
                     3);
    hk_meeting_dispose(&m);
}

static void test_stop_then_complete(void **state)
{
    (void)state;
    int64_t id = new_meeting();
    hk_meeting_t m;
    assert_int_equal(hk_lifecycle_transition(store, id, "active", NULL, HK_SOURCE_BOT, NULL), 0);
    assert_int_equal(
        hk_lifecycle_transition(store, id, "stopping", "stop requested", HK_SOURCE_USER, &m), 0);
    assert_string_equal(m.status, "stopping");
    assert_int_equal(m.end_time, 0); /* not terminal yet */
    assert_true(json_is_null(json_object_get(m.data, "completion_reason")));
    hk_meeting_dispose(&m);

    assert_int_equal(hk_lifecycle_transition(store, id, "stopping", "again", HK_SOURCE_USER, &m),
                     HK_ESTATE);
    assert_string_equal(m.status, "stopping");
    hk_meeting_dispose(&m);

    assert_int_equal(hk_lifecycle_transition(store, id, "completed", NULL, HK_SOURCE_BOT, &m), 0);
    assert_string_equal(m.status, "completed");
    assert_true(m.end_time > 0);
    assert_true(json_is_null(json_object_get(m.data, "completion_reason")));
    assert_true(json_is_null(json_object_get(m.data, "failure_stage"))); /* only on failed */
    json_t *list = json_object_get(m.data, "status_transition");
    assert_int_equal(json_array_size(list), 3);
    json_t *last = json_array_get(list, 2);
    assert_string_equal(json_string_value(json_object_get(last, "from")), "stopping");
    assert_string_equal(json_string_value(json_object_get(last, "to")), "completed");
    assert_string_equal(json_string_value(json_object_get(last, "source")), "bot");
    hk_meeting_dispose(&m);
}

static void test_from_terminal_is_refused(void **state)
{
    (void)state;
    int64_t id = new_meeting();
    hk_meeting_t m;
    assert_int_equal(hk_lifecycle_transition(store, id, "completed", "done", HK_SOURCE_USER, NULL),
                     0);
    assert_int_equal(hk_store_meeting_get(store, -1, id, &m), 0);
    int64_t end = m.end_time;
    hk_meeting_dispose(&m);

    const char *targets[] = {"active", "stopping", "failed", "completed"};
    for (size_t i = 0; i < sizeof(targets) / sizeof(targets[0]); i++) {
        memset(&m, 0, sizeof(m));
        assert_int_equal(hk_lifecycle_transition(store, id, targets[i], "late", HK_SOURCE_BOT, &m),
                         HK_ESTATE);
        /* out holds the meeting as it is. */
        assert_int_equal(m.id, id);
        assert_string_equal(m.status, "completed");
        assert_int_equal(m.end_time, end);
        assert_int_equal(json_array_size(json_object_get(m.data, "status_transition")), 1);
        assert_string_equal(json_string_value(json_object_get(m.data, "completion_reason")),
                            "done");
        hk_meeting_dispose(&m);
    }
    /* Without out, nothing to dispose. */
    assert_int_equal(hk_lifecycle_transition(store, id, "failed", NULL, HK_SOURCE_BOT, NULL),
                     HK_ESTATE);

    /* Backwards moves are refused the same way and change nothing. */
    int64_t id2 = new_meeting();
    assert_int_equal(hk_lifecycle_transition(store, id2, "active", NULL, HK_SOURCE_BOT, NULL), 0);
    assert_int_equal(hk_lifecycle_transition(store, id2, "joining", NULL, HK_SOURCE_BOT, &m),
                     HK_ESTATE);
    assert_string_equal(m.status, "active");
    assert_int_equal(json_array_size(json_object_get(m.data, "status_transition")), 1);
    hk_meeting_dispose(&m);
    assert_int_equal(hk_lifecycle_transition(store, id2, "bogus", NULL, HK_SOURCE_BOT, &m),
                     HK_ESTATE);
    assert_string_equal(m.status, "active");
    hk_meeting_dispose(&m);
}

static void test_unknown_meeting(void **state)
{
    (void)state;
    hk_meeting_t m;
    memset(&m, 0, sizeof(m));
    assert_int_equal(hk_lifecycle_transition(store, 987654321, "active", NULL, HK_SOURCE_BOT, &m),
                     HK_ENOTFOUND);
    assert_null(m.status);
    assert_null(m.data);
    assert_int_equal(hk_lifecycle_transition(store, -5, "failed", NULL, HK_SOURCE_BOT, NULL),
                     HK_ENOTFOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_valid),
        cmocka_unit_test(test_allowed_forward),
        cmocka_unit_test(test_allowed_stopping_and_terminal),
        cmocka_unit_test(test_allowed_unknown),
        cmocka_unit_test(test_initial_data),
        cmocka_unit_test(test_transition_to_active_then_failed),
        cmocka_unit_test(test_failed_before_start),
        cmocka_unit_test(test_transition_options),
        cmocka_unit_test(test_stop_then_complete),
        cmocka_unit_test(test_from_terminal_is_refused),
        cmocka_unit_test(test_unknown_meeting),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
