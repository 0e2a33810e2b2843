/* Unit tests for src/store (SQLite backend) against databases in a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sqlite3.h>
#include "core/log.h"
#include "store/store.h"

static char root[64]; /* the mkdtemp directory holding every test's data directory */
static int dir_seq;

/* A fresh, not yet existing data directory under root (the store creates it). */
static void new_dir(char *out, size_t outlen)
{
    int n = snprintf(out, outlen, "%s/d%d/data", root, ++dir_seq);
    assert_true(n > 0 && (size_t)n < outlen);
}

static hk_store_t *open_store(const char *dir, int pool)
{
    hk_store_t *s = NULL;
    char err[256];
    int rc = hk_store_open(dir, pool, &s, err, sizeof(err));
    if (rc != 0)
        print_error("open failed: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(s);
    return s;
}

static hk_store_t *fresh_store(int pool)
{
    char dir[256];
    new_dir(dir, sizeof(dir));
    return open_store(dir, pool);
}

static int64_t make_user(hk_store_t *s, const char *email)
{
    hk_user_t u;
    bool created;
    assert_int_equal(hk_store_user_upsert(s, email, NULL, 5, NULL, &u, &created), 0);
    int64_t id = u.id;
    hk_user_dispose(&u);
    return id;
}

/* Creates a meeting with the given native id and status; returns its id or the error. */
static int64_t make_meeting(hk_store_t *s, int64_t user_id, const char *native, const char *status,
                            int max_active)
{
    hk_meeting_t in = {0}, out;
    in.user_id = user_id;
    in.platform = "google_meet";
    in.native_meeting_id = (char *)native;
    in.status = (char *)status;
    int rc = hk_store_meeting_create(s, &in, max_active, &out);
    if (rc != 0)
        return rc;
    int64_t id = out.id;
    hk_meeting_dispose(&out);
    return id;
}

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
    hk_log_init(HK_LOG_ERROR, NULL); /* conflicts and bad JSON are expected here: warn level */
    snprintf(root, sizeof(root), "/tmp/hark-store-test-XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- open / migrations ---- */

static void test_open_migrate_reopen(void **state)
{
    (void)state;
    char dir[256];
    new_dir(dir, sizeof(dir));
    hk_store_t *s = open_store(dir, 2);
    assert_int_equal(hk_store_schema_version(s), 2);
    assert_int_equal(hk_store_ping(s), 0);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    int64_t id = make_user(s, "keep@example.com");
    hk_store_close(s);

    s = open_store(dir, 1);
    assert_int_equal(hk_store_schema_version(s), 2);
    hk_user_t u;
    assert_int_equal(hk_store_user_get(s, id, &u), 0);
    assert_string_equal(u.email, "keep@example.com");
    hk_user_dispose(&u);
    hk_store_close(s);
}

static void test_open_errors(void **state)
{
    (void)state;
    hk_store_t *s = (hk_store_t *)1;
    char err[256];
    assert_int_equal(hk_store_open("postgres://u@h/db", 2, &s, err, sizeof(err)), HK_ESTORE);
    assert_null(s);
    assert_non_null(strstr(err, "PostgreSQL"));
    assert_int_equal(hk_store_open("postgresql://u@h/db", 2, &s, err, sizeof(err)), HK_ESTORE);
    assert_int_equal(hk_store_open(root, 0, &s, err, sizeof(err)), HK_ESTORE);

    /* A regular file where the directory should be. */
    char path[300];
    snprintf(path, sizeof(path), "%s/file", root);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fclose(f);
    assert_int_equal(hk_store_open(path, 1, &s, err, sizeof(err)), HK_ESTORE);

    /* A database from a newer hark is refused, not downgraded. */
    char dir[256];
    new_dir(dir, sizeof(dir));
    s = open_store(dir, 1);
    hk_store_close(s);
    snprintf(path, sizeof(path), "%s/hark.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    s = NULL;
    hk_log_init(HK_LOG_OFF, NULL);
    assert_int_equal(hk_store_open(dir, 1, &s, err, sizeof(err)), HK_ESTORE);
    hk_log_init(HK_LOG_ERROR, NULL);
    assert_null(s);
    assert_non_null(strstr(err, "newer"));
}

/* ---- users ---- */

static void test_users(void **state)
{
    (void)state;
    hk_store_t *s = fresh_store(2);
    hk_user_t u, v;
    bool created = false;
    json_t *data = json_pack("{s:s}", "plan", "pro");
    assert_int_equal(hk_store_user_upsert(s, "Alice@Example.com", "Alice", 3, data, &u, &created),
                     0);
    assert_true(created);
    assert_true(u.id > 0);
    assert_string_equal(u.name, "Alice");
    assert_int_equal(u.max_concurrent_bots, 3);
    assert_string_equal(json_string_value(json_object_get(u.data, "plan")), "pro");
    assert_true(u.created_at > 0);

    /* Same email in another case: found, not changed. */
    assert_int_equal(hk_store_user_upsert(s, "alice@EXAMPLE.com", "Other", 9, NULL, &v, &created),
                     0);
    assert_false(created);
    assert_int_equal(v.id, u.id);
    assert_string_equal(v.name, "Alice");
    assert_int_equal(v.max_concurrent_bots, 3);
    hk_user_dispose(&v);

    assert_int_equal(hk_store_user_get_by_email(s, "ALICE@example.COM", &v), 0);
    assert_int_equal(v.id, u.id);
    hk_user_dispose(&v);
    assert_int_equal(hk_store_user_get_by_email(s, "nobody@example.com", &v), HK_ENOTFOUND);
    assert_int_equal(hk_store_user_get(s, u.id + 100, &v), HK_ENOTFOUND);

    /* Update: only the given fields change. */
    json_t *data2 = json_pack("{s:i}", "x", 1);
    assert_int_equal(hk_store_user_update(s, u.id, "Alice B", -1, NULL, &v), 0);
    assert_string_equal(v.name, "Alice B");
    assert_int_equal(v.max_concurrent_bots, 3);
    assert_string_equal(json_string_value(json_object_get(v.data, "plan")), "pro");
    hk_user_dispose(&v);
    assert_int_equal(hk_store_user_update(s, u.id, NULL, 7, data2, &v), 0);
    assert_string_equal(v.name, "Alice B");
    assert_int_equal(v.max_concurrent_bots, 7);
    assert_true(json_equal(v.data, data2));
    hk_user_dispose(&v);
    assert_int_equal(hk_store_user_update(s, u.id + 100, "x", 1, NULL, &v), HK_ENOTFOUND);

    /* Invalid input is refused before the database. */
    assert_int_equal(hk_store_user_upsert(s, "", NULL, 1, NULL, &v, &created), HK_EINVAL);
    json_t *arr = json_array();
    assert_int_equal(hk_store_user_upsert(s, "a@b.c", NULL, 1, arr, &v, &created), HK_EINVAL);
    json_decref(arr);

    hk_user_dispose(&u);
    json_decref(data);
    json_decref(data2);
    hk_store_close(s);
}

static void test_user_list_paging(void **state)
{
    (void)state;
    hk_store_t *s = fresh_store(1);
    int64_t ids[5];
    for (int i = 0; i < 5; i++) {
        char email[32];
        snprintf(email, sizeof(email), "u%d@example.com", i);
        ids[i] = make_user(s, email);
    }
    hk_user_t *v;
    size_t n;
    for (int page = 0; page < 3; page++) {
        assert_int_equal(hk_store_user_list(s, 2, page * 2, &v, &n), 0);
        assert_int_equal(n, page < 2 ? 2 : 1);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(v[i].id, ids[page * 2 + (int)i]);
        hk_store_free_users(v, n);
    }
    assert_int_equal(hk_store_user_list(s, 2, 6, &v, &n), 0);
    assert_int_equal(n, 0);
    assert_null(v);
    assert_int_equal(hk_store_user_list(s, -1, 0, &v, &n), 0);
    assert_int_equal(n, 5);
    hk_store_free_users(v, n);
    hk_store_close(s);
}

/* ---- tokens ---- */

static void test_tokens(void **state)
{
    (void)state;
    hk_store_t *s = fresh_store(2);
    int64_t uid = make_user(s, "tok@example.com");
    hk_token_t t1, t2;
    assert_int_equal(hk_store_token_create(s, uid, "aaaa", &t1), 0);
    assert_int_equal(t1.user_id, uid);
    assert_true(t1.created_at > 0);
    assert_int_equal(t1.last_used_at, 0);
    assert_int_equal(hk_store_token_create(s, uid, "bbbb", &t2), 0);
    assert_true(t2.id > t1.id);
    assert_int_equal(hk_store_token_create(s, uid, "aaaa", &t2), HK_ECONFLICT);
    assert_int_equal(hk_store_token_create(s, uid + 100, "cccc", &t2), HK_ENOTFOUND);

    int64_t user_id, token_id;
    assert_int_equal(hk_store_token_lookup(s, "aaaa", &user_id, &token_id), 0);
    assert_int_equal(user_id, uid);
    assert_int_equal(token_id, t1.id);
    assert_int_equal(hk_store_token_lookup(s, "zzzz", &user_id, &token_id), HK_ENOTFOUND);

    assert_int_equal(hk_store_token_touch(s, t1.id, 123456), 0);
    assert_int_equal(hk_store_token_touch(s, t1.id + 100, 1), HK_ENOTFOUND);
    hk_token_t *v;
    size_t n;
    assert_int_equal(hk_store_token_list(s, uid, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(v[0].id, t1.id);
    assert_int_equal(v[0].last_used_at, 123456);
    assert_int_equal(v[1].last_used_at, 0);
    free(v);

    assert_int_equal(hk_store_token_delete(s, t1.id, &user_id), 0);
    assert_int_equal(user_id, uid);
    assert_int_equal(hk_store_token_delete(s, t1.id, &user_id), HK_ENOTFOUND);
    assert_int_equal(hk_store_token_lookup(s, "aaaa", &user_id, &token_id), HK_ENOTFOUND);
    assert_int_equal(hk_store_token_list(s, uid, &v, &n), 0);
    assert_int_equal(n, 1);
    free(v);
    assert_int_equal(hk_store_token_list(s, uid + 100, &v, &n), 0);
    assert_int_equal(n, 0);
    assert_null(v);
    hk_store_close(s);
}

/* ---- meetings ---- */

static void test_meeting_create_rules(void **state)
{
    (void)state;
    hk_store_t *s = fresh_store(2);
    int64_t uid = make_user(s, "m@example.com");
    int64_t other = make_user(s, "o@example.com");

    hk_meeting_t in = {0}, m;
    in.user_id = uid;
    in.platform = "google_meet";
    in.native_meeting_id = "abc-defg-hij";
    in.status = "requested";
    in.data = json_pack("{s:s}", "name", "Standup");
    in.config = json_pack("{s:s}", "meeting_url", "https://meet.google.com/abc-defg-hij");
    in.start_time = 5000;
    assert_int_equal(hk_store_meeting_create(s, &in, 1, &m), 0);
    assert_true(m.id > 0);
    assert_string_equal(m.status, "requested");
    assert_string_equal(m.native_meeting_id, "abc-defg-hij");
    assert_int_equal(m.start_time, 5000);
    assert_int_equal(m.end_time, 0);
    assert_true(m.created_at > 0 && m.updated_at == m.created_at);
    assert_true(json_equal(m.data, in.data));
    assert_true(json_equal(m.config, in.config));
    int64_t first = m.id;
    hk_meeting_dispose(&m);

    /* Duplicate is a conflict even at the limit; another id at the limit is a limit error. */
    assert_int_equal(make_meeting(s, uid, "abc-defg-hij", "requested", 1), HK_ECONFLICT);
    assert_int_equal(make_meeting(s, uid, "abc-defg-hij", "active", -1), HK_ECONFLICT);
    assert_int_equal(make_meeting(s, uid, "xyz", "requested", 1), HK_ELIMIT);
    assert_true(make_meeting(s, uid, "xyz", "requested", 2) > 0);
    /* Another user may use the same native id. */
    assert_true(make_meeting(s, other, "abc-defg-hij", "requested", 1) > 0);

    /* Once terminal, the native id is free again. */
    assert_int_equal(
        hk_store_meeting_set_status(s, first, "requested", "completed", NULL, 0, 9000, NULL), 0);
    int64_t second = make_meeting(s, uid, "abc-defg-hij", "requested", 2);
    assert_true(second > first);

    /* find returns the latest with that native id. */
    assert_int_equal(hk_store_meeting_find(s, uid, "google_meet", "abc-defg-hij", &m), 0);
    assert_int_equal(m.id, second);
    hk_meeting_dispose(&m);
    assert_int_equal(hk_store_meeting_find(s, uid, "zoom", "abc-defg-hij", &m), HK_ENOTFOUND);

    /* get is scoped to the owner unless user_id < 0. */
    assert_int_equal(hk_store_meeting_get(s, other, first, &m), HK_ENOTFOUND);
    assert_int_equal(hk_store_meeting_get(s, -1, first, &m), 0);
    assert_string_equal(m.status, "completed");
    assert_int_equal(m.start_time, 5000);
    assert_int_equal(m.end_time, 9000);
    assert_true(json_equal(m.data, in.data)); /* NULL data keeps it */
    hk_meeting_dispose(&m);

    /* Active lists. */
    hk_meeting_t *v;
    size_t n;
    assert_int_equal(hk_store_meeting_list_active(s, uid, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_true(v[0].id < v[1].id);
    hk_store_free_meetings(v, n);
    assert_int_equal(hk_store_meeting_list_active(s, -1, &v, &n), 0);
    assert_int_equal(n, 3);
    hk_store_free_meetings(v, n);

    /* Unknown user: the foreign key says not found. */
    assert_int_equal(make_meeting(s, uid + 100, "q", "requested", -1), HK_ENOTFOUND);

    json_decref(in.data);
    json_decref(in.config);
    hk_store_close(s);
}

static void test_meeting_list_pagination(void **state)
{
    (void)state;
    hk_store_t *s = fresh_store(1);
    int64_t uid = make_user(s, "p@example.com");
    int64_t other = make_user(s, "q@example.com");
    int64_t ids[7];
    for (int i = 0; i < 7; i++) {
        char native[16];
        snprintf(native, sizeof(native), "n%d", i);
        ids[i] = make_meeting(s, uid, native, "requested", -1);
        assert_true(ids[i] > 0);
        assert_true(make_meeting(s, other, native, "requested", -1) > 0);
    }
    /* Walk the pages newest first: 3, 3, 1, then nothing. */
    int64_t before = 0;
    int seen = 0;
    for (;;) {
        hk_meeting_t *v;
        size_t n;
        assert_int_equal(hk_store_meeting_list(s, uid, 3, before, &v, &n), 0);
        if (n == 0) {
            assert_null(v);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(v[i].id, ids[6 - seen]);
            assert_int_equal(v[i].user_id, uid);
            seen++;
        }
        before = v[n - 1].id;
        hk_store_free_meetings(v, n);
    }
    assert_int_equal(seen, 7);
    hk_store_close(s);
}

static void test_meeting_set_status_cas(void **state)
{
    (void)state;
    hk_store_t *s = fresh_store(2);
    int64_t uid = make_user(s, "cas@example.com");
    int64_t id = make_meeting(s, uid, "cas", "requested", -1);
    hk_meeting_t m;
    json_t *d = json_pack("{s:s}", "status_transition", "requested->active");
    assert_int_equal(hk_store_meeting_set_status(s, id, "requested", "active", d, 1111, 0, &m), 0);
    assert_string_equal(m.status, "active");
    assert_int_equal(m.start_time, 1111);
    assert_int_equal(m.end_time, 0);
    assert_true(json_equal(m.data, d));
    assert_true(m.updated_at >= m.created_at);
    hk_meeting_dispose(&m);

    /* Stale expectation: conflict, nothing changes. */
    assert_int_equal(hk_store_meeting_set_status(s, id, "requested", "failed", NULL, 0, 2, &m),
                     HK_ECONFLICT);
    assert_null(m.status);
    assert_int_equal(hk_store_meeting_get(s, uid, id, &m), 0);
    assert_string_equal(m.status, "active");
    assert_int_equal(m.end_time, 0);
    hk_meeting_dispose(&m);
    assert_int_equal(hk_store_meeting_set_status(s, id + 100, "active", "failed", NULL, 0, 0, NULL),
                     HK_ENOTFOUND);

    /* Reviving a finished meeting while another live one holds its native id: conflict. */
    assert_int_equal(hk_store_meeting_set_status(s, id, "active", "completed", NULL, 0, 0, NULL),
                     0);
    int64_t live = make_meeting(s, uid, "cas", "requested", -1);
    assert_true(live > id);
    assert_int_equal(hk_store_meeting_set_status(s, id, "completed", "active", NULL, 0, 0, NULL),
                     HK_ECONFLICT);

    /* set_data. */
    json_t *d2 = json_pack("{s:[s]}", "participants", "Bob");
    assert_int_equal(hk_store_meeting_set_data(s, id, 0, d2, &m), 0);
    assert_true(json_equal(m.data, d2));
    int64_t v1 = m.updated_at;
    hk_meeting_dispose(&m);
    assert_int_equal(hk_store_meeting_set_data(s, id + 100, 0, d2, NULL), HK_ENOTFOUND);
    /* compare-and-set on the version read: every write moves updated_at, even within a ms */
    json_t *d3 = json_pack("{s:s}", "name", "three");
    assert_int_equal(hk_store_meeting_set_data(s, id, v1, d3, &m), 0);
    int64_t v2 = m.updated_at;
    assert_true(v2 > v1);
    hk_meeting_dispose(&m);
    assert_int_equal(hk_store_meeting_set_data(s, id, v1, d2, NULL), HK_ECONFLICT); /* stale */
    assert_int_equal(hk_store_meeting_get(s, -1, id, &m), 0);
    assert_true(json_equal(m.data, d3)); /* the stale write changed nothing */
    hk_meeting_dispose(&m);
    /* a status move derived from a stale read conflicts too, and a data write then sees it */
    assert_int_equal(
        hk_store_meeting_set_status_ev(s, id, "completed", v1, "failed", d2, 0, 0, NULL, NULL),
        HK_ECONFLICT);
    assert_int_equal(
        hk_store_meeting_set_status_ev(s, id, "completed", v2, "failed", NULL, 0, 0, NULL, &m),
        0); /* the version read is current: it goes through */
    assert_string_equal(m.status, "failed");
    assert_true(json_equal(m.data, d3));
    assert_true(m.updated_at > v2);
    hk_meeting_dispose(&m);
    json_decref(d3);

    json_decref(d);
    json_decref(d2);
    hk_store_close(s);
}

/* ---- sessions, segments, purge ---- */

static hk_segment_t seg(const char *id, int64_t meeting, double start, const char *text)
{
    hk_segment_t g = {0};
    g.segment_id = (char *)id;
    g.meeting_id = meeting;
    g.start = start;
    g.end = start + 1.5;
    g.text = (char *)text;
    return g;
}

static void test_segments(void **state)
{
    (void)state;
    hk_store_t *s = fresh_store(2);
    int64_t uid = make_user(s, "seg@example.com");
    int64_t mid = make_meeting(s, uid, "seg", "active", -1);
    int64_t sid;
    assert_int_equal(hk_store_session_create(s, mid, "uid-1", 0, &sid), 0);
    assert_true(sid > 0);
    assert_int_equal(hk_store_session_end(s, sid, 0), 0);
    assert_int_equal(hk_store_session_end(s, sid + 100, 0), HK_ENOTFOUND);
    assert_int_equal(hk_store_session_create(s, mid + 100, NULL, 0, &sid), HK_ENOTFOUND);

    hk_segment_t in[4] = {seg("m:1:2", mid, 2.0, "two"), seg("m:1:0", mid, 0.5, "zero"),
                          seg("m:1:1b", mid, 1.0, "one b"), seg("m:1:1a", mid, 1.0, "one a")};
    in[0].speaker = "Alice";
    in[0].language = "en";
    in[0].session_id = sid;
    in[0].created_at = 1000;
    assert_int_equal(hk_store_segments_put(s, in, 4), 0);
    int64_t count;
    assert_int_equal(hk_store_segments_count(s, mid, &count), 0);
    assert_int_equal(count, 4);

    hk_segment_t *v;
    size_t n;
    assert_int_equal(hk_store_segments_list(s, mid, &v, &n), 0);
    assert_int_equal(n, 4);
    const char *order[] = {"m:1:0", "m:1:1a", "m:1:1b", "m:1:2"};
    for (size_t i = 0; i < n; i++)
        assert_string_equal(v[i].segment_id, order[i]);
    assert_string_equal(v[3].speaker, "Alice");
    assert_string_equal(v[3].language, "en");
    assert_int_equal(v[3].session_id, sid);
    assert_int_equal(v[3].created_at, 1000);
    assert_null(v[0].speaker);
    assert_int_equal(v[0].session_id, 0);
    assert_true(v[0].end > v[0].start);
    hk_store_free_segments(v, n);

    /* Upsert: the text and times change, created_at stays. */
    hk_segment_t up = seg("m:1:2", mid, 2.25, "two, final");
    up.created_at = 5000;
    up.updated_at = 6000;
    assert_int_equal(hk_store_segments_put(s, &up, 1), 0);
    assert_int_equal(hk_store_segments_count(s, mid, &count), 0);
    assert_int_equal(count, 4);
    assert_int_equal(hk_store_segments_list(s, mid, &v, &n), 0);
    assert_string_equal(v[3].text, "two, final");
    assert_true(v[3].start == 2.25);
    assert_int_equal(v[3].created_at, 1000);
    assert_int_equal(v[3].updated_at, 6000);
    assert_null(v[3].speaker);
    hk_store_free_segments(v, n);

    /* A batch with one bad row (unknown meeting) is rolled back as a whole. */
    hk_segment_t bad[2] = {seg("m:1:9", mid, 9.0, "nine"), seg("x:1:0", mid + 100, 0, "x")};
    assert_int_equal(hk_store_segments_put(s, bad, 2), HK_ENOTFOUND);
    assert_int_equal(hk_store_segments_count(s, mid, &count), 0);
    assert_int_equal(count, 4);
    hk_segment_t nul = seg("m:1:8", mid, 8.0, NULL);
    assert_int_equal(hk_store_segments_put(s, &nul, 1), HK_EINVAL);
    assert_int_equal(hk_store_segments_put(s, NULL, 0), 0);

    /* Purge refuses a live meeting, then wipes a finished one. */
    json_t *counters = json_pack("{s:i}", "segments", 4);
    assert_int_equal(hk_store_meeting_purge(s, mid, 0, counters), HK_ESTATE);
    assert_int_equal(hk_store_meeting_purge(s, mid + 100, 0, counters), HK_ENOTFOUND);
    assert_int_equal(hk_store_meeting_set_status(s, mid, "active", "completed", NULL, 0, 0, NULL),
                     0);
    assert_int_equal(hk_store_meeting_purge(s, mid, 1, counters), HK_ECONFLICT); /* stale */
    assert_int_equal(hk_store_meeting_purge(s, mid, 0, counters), 0);
    assert_int_equal(hk_store_segments_count(s, mid, &count), 0);
    assert_int_equal(count, 0);
    assert_int_equal(hk_store_segments_list(s, mid, &v, &n), 0);
    assert_int_equal(n, 0);
    assert_null(v);
    assert_int_equal(hk_store_session_end(s, sid, 0), HK_ENOTFOUND);
    hk_meeting_t m;
    assert_int_equal(hk_store_meeting_get(s, uid, mid, &m), 0);
    assert_true(json_equal(m.data, counters));
    assert_int_equal(json_object_size(m.config), 0);
    hk_meeting_dispose(&m);
    json_decref(counters);
    hk_store_close(s);
}

/* ---- concurrency ---- */

#define THREADS 4
#define PER_THREAD 40

#define LIMIT 3

typedef struct {
    hk_store_t *s;
    int64_t user_id;
    int64_t limited_user_id;
    int index;
    /* cmocka asserts are not thread-safe: count here, assert in the main thread */
    int errors;
    int created_users; /* racing upserts of one email that reported "created" */
    int limited_ok;    /* meetings created for limited_user_id */
} worker_t;

static void *worker(void *arg)
{
    worker_t *w = arg;
    hk_user_t u;
    bool created = false;
    if (hk_store_user_upsert(w->s, "race@example.com", NULL, 1, NULL, &u, &created) != 0)
        w->errors++;
    else
        hk_user_dispose(&u);
    w->created_users += created;
    for (int i = 0; i < 5; i++) {
        char native[32];
        snprintf(native, sizeof(native), "lim%d-%d", w->index, i);
        int64_t rc = make_meeting(w->s, w->limited_user_id, native, "requested", LIMIT);
        if (rc > 0)
            w->limited_ok++;
        else if (rc != HK_ELIMIT)
            w->errors++;
    }
    for (int i = 0; i < PER_THREAD; i++) {
        char native[32];
        snprintf(native, sizeof(native), "t%d-%d", w->index, i);
        int64_t id = make_meeting(w->s, w->user_id, native, "requested", -1);
        if (id <= 0)
            w->errors++;
        else if (hk_store_meeting_set_status(w->s, id, "requested", "completed", NULL, 0, 0,
                                             NULL) != 0)
            w->errors++;
        hk_meeting_t *v;
        size_t n;
        if (hk_store_meeting_list(w->s, w->user_id, 10, 0, &v, &n) != 0 || n == 0)
            w->errors++;
        else
            hk_store_free_meetings(v, n);
        hk_segment_t g = seg(native, id, i, "x");
        if (hk_store_segments_put(w->s, &g, 1) != 0)
            w->errors++;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    hk_store_t *s = fresh_store(2);
    int64_t uid = make_user(s, "threads@example.com");
    int64_t limited = make_user(s, "limited@example.com");
    pthread_t th[THREADS];
    worker_t w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker_t){.s = s, .user_id = uid, .limited_user_id = limited, .index = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w[i]), 0);
    }
    int created_users = 0, limited_ok = 0;
    for (int i = 0; i < THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(w[i].errors, 0);
        created_users += w[i].created_users;
        limited_ok += w[i].limited_ok;
    }
    /* The check and the insert share a transaction, so racing callers cannot overshoot. */
    assert_int_equal(created_users, 1);
    assert_int_equal(limited_ok, LIMIT);
    hk_meeting_t *v;
    size_t n;
    assert_int_equal(hk_store_meeting_list(s, uid, -1, 0, &v, &n), 0);
    assert_int_equal(n, THREADS * PER_THREAD);
    hk_store_free_meetings(v, n);
    hk_store_close(s);
}

/* ---- durability ---- */

/* A committed write survives the process dying without closing the store (WAL +
 * synchronous=NORMAL): a child writes and _exit()s, the parent reopens and reads it. */
static void test_survives_process_crash(void **state)
{
    (void)state;
    char dir[256];
    new_dir(dir, sizeof(dir));
    hk_store_close(open_store(dir, 1));
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        hk_store_t *s = NULL;
        char err[256];
        hk_user_t u;
        bool created;
        if (hk_store_open(dir, 1, &s, err, sizeof(err)) != 0 ||
            hk_store_user_upsert(s, "crash@example.com", NULL, 1, NULL, &u, &created) != 0)
            _exit(1);
        _exit(0); /* no close, no checkpoint: the commit is only in the WAL */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    hk_store_t *s = open_store(dir, 1);
    hk_user_t u;
    assert_int_equal(hk_store_user_get_by_email(s, "crash@example.com", &u), 0);
    hk_user_dispose(&u);
    hk_store_close(s);
}

/* ---- damaged data ---- */

static void test_unparsable_json(void **state)
{
    (void)state;
    char dir[256], path[300];
    new_dir(dir, sizeof(dir));
    hk_store_t *s = open_store(dir, 1);
    int64_t uid = make_user(s, "bad@example.com");
    int64_t mid = make_meeting(s, uid, "bad", "requested", -1);
    hk_store_close(s);

    snprintf(path, sizeof(path), "%s/hark.db", dir);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "UPDATE users SET data = '{not json';"
                                  "UPDATE meetings SET data = '[1,2]', config = '';",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    s = open_store(dir, 1);
    hk_user_t u;
    assert_int_equal(hk_store_user_get(s, uid, &u), 0);
    assert_true(json_is_object(u.data));
    assert_int_equal(json_object_size(u.data), 0);
    hk_user_dispose(&u);
    hk_meeting_t m;
    assert_int_equal(hk_store_meeting_get(s, uid, mid, &m), 0);
    assert_true(json_is_object(m.data) && json_object_size(m.data) == 0);
    assert_true(json_is_object(m.config) && json_object_size(m.config) == 0);
    hk_meeting_dispose(&m);
    hk_store_close(s);
}

static void test_invalid_args(void **state)
{
    (void)state;
    hk_store_t *s = fresh_store(1);
    hk_meeting_t in = {0}, m;
    in.user_id = 1;
    in.platform = "zoom";
    assert_int_equal(hk_store_meeting_create(s, &in, -1, &m), HK_EINVAL);
    assert_int_equal(hk_store_meeting_set_data(s, 1, 0, NULL, NULL), HK_EINVAL);
    assert_int_equal(hk_store_meeting_set_status(s, 1, "a", NULL, NULL, 0, 0, NULL), HK_EINVAL);
    int64_t n;
    assert_int_equal(hk_store_segments_count(NULL, 1, &n), HK_EINVAL);
    assert_int_equal(hk_store_ping(NULL), HK_EINVAL);
    hk_store_close(NULL);
    assert_true(hk_meeting_status_terminal("completed"));
    assert_true(hk_meeting_status_terminal("failed"));
    assert_false(hk_meeting_status_terminal("active"));
    assert_false(hk_meeting_status_terminal(NULL));
    hk_store_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_migrate_reopen),
        cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_users),
        cmocka_unit_test(test_user_list_paging),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_meeting_create_rules),
        cmocka_unit_test(test_meeting_list_pagination),
        cmocka_unit_test(test_meeting_set_status_cas),
        cmocka_unit_test(test_segments),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_survives_process_crash),
        cmocka_unit_test(test_unparsable_json),
        cmocka_unit_test(test_invalid_args),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
