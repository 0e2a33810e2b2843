/* SQLite storage backend: a fixed pool of connections, prepared statements cached per connection.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sqlite3.h>
#include "core/log.h"
#include "core/timeutil.h"
#include "store/backend.h"
#include "store/migrations.h"

/*
 * Durability: WAL with synchronous=NORMAL. A commit is appended to the WAL and the WAL is fsynced
 * only at checkpoints, so a committed transaction survives the hark process crashing or being
 * killed (the data is in the OS page cache and the WAL is replayed at next open), but the last
 * transactions before a power loss or kernel crash may be rolled back. The database is never
 * corrupted either way. That is the right trade for transcripts (the live copy is on the bus and
 * segments are re-put) and it keeps writes from waiting on fsync.
 *
 * Threads: each connection is used by one thread at a time (the pool hands it out), so
 * connections are opened with SQLITE_OPEN_NOMUTEX. WAL lets readers run beside the single writer;
 * writers serialise on SQLite's lock, waiting up to busy_timeout.
 */

#define BUSY_TIMEOUT_MS 5000
#define MOD "store"

/* Only these two statuses end a meeting; must match hk_meeting_status_terminal() and the partial
 * indexes in migrations.c, textually, so the planner can use that index for active lookups. */
#define ACTIVE_WHERE "status NOT IN ('completed','failed')"

#define USER_COLS "id, email, name, max_concurrent_bots, data, created_at"
#define TOKEN_COLS "id, user_id, created_at, last_used_at"
#define MEETING_COLS                                                                               \
    "id, user_id, platform, native_meeting_id, status, start_time, end_time, created_at, "         \
    "updated_at, data, config"
#define SEGMENT_COLS                                                                               \
    "segment_id, meeting_id, session_id, \"start\", \"end\", text, speaker, language, "            \
    "created_at, "                                                                                 \
    "updated_at"

#define WEBHOOK_COLS "user_id, url, secret, events, created_at, updated_at"
#define DELIVERY_COLS                                                                              \
    "d.id, d.user_id, d.meeting_id, e.event_id, e.event_type, e.created_at, d.state, d.attempts, " \
    "d.last_status, d.last_error, d.next_attempt_at, d.delivered_at, d.created_at, d.updated_at"

enum {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_PING,
    ST_USER_GET,
    ST_USER_GET_EMAIL,
    ST_USER_INSERT,
    ST_USER_LIST,
    ST_USER_UPDATE,
    ST_TOKEN_INSERT,
    ST_TOKEN_GET,
    ST_TOKEN_LIST,
    ST_TOKEN_DELETE,
    ST_TOKEN_LOOKUP,
    ST_TOKEN_TOUCH,
    ST_MEETING_COUNT_ACTIVE,
    ST_MEETING_ACTIVE_DUP,
    ST_MEETING_INSERT,
    ST_MEETING_GET,
    ST_MEETING_STATUS,
    ST_MEETING_FIND,
    ST_MEETING_LIST,
    ST_MEETING_LIST_ACTIVE,
    ST_MEETING_LIST_ACTIVE_ALL,
    ST_MEETING_SET_DATA,
    ST_MEETING_SET_STATUS,
    ST_MEETING_PURGE,
    ST_SEGMENTS_DELETE,
    ST_SESSIONS_DELETE,
    ST_SESSION_INSERT,
    ST_SESSION_END,
    ST_SEGMENT_UPSERT,
    ST_SEGMENT_LIST,
    ST_SEGMENT_COUNT,
    ST_ANALYTICS,
    ST_WH_GET,
    ST_WH_UPSERT,
    ST_WH_DELETE,
    ST_DLV_REARM,
    ST_DLV_FAIL_USER,
    ST_EVENT_INSERT,
    ST_DLV_INSERT,
    ST_DLV_HOLD_LATER,
    ST_DLV_LIST,
    ST_DLV_GET,
    ST_DLV_EVENT,
    ST_DLV_CLAIM,
    ST_DLV_MARK_SENDING,
    ST_DLV_NEXT_DUE,
    ST_DLV_RECORD,
    ST_DLV_RESET_SENDING,
    ST_DLV_PRUNE,
    ST_EVT_PRUNE,
    ST_COUNT
};

static const char *const sql_text[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    /* Touches a real table, so a missing or unreadable schema fails the readiness check. */
    [ST_PING] = "SELECT 1 FROM users LIMIT 1",

    [ST_USER_GET] = "SELECT " USER_COLS " FROM users WHERE id = ?1",
    /* users.email is COLLATE NOCASE, so '=' compares case-insensitively and uses the index. */
    [ST_USER_GET_EMAIL] = "SELECT " USER_COLS " FROM users WHERE email = ?1",
    [ST_USER_INSERT] = "INSERT INTO users (email, name, max_concurrent_bots, data, created_at)"
                       " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_USER_LIST] = "SELECT " USER_COLS " FROM users ORDER BY id LIMIT ?1 OFFSET ?2",
    [ST_USER_UPDATE] = "UPDATE users SET name = coalesce(?2, name),"
                       " max_concurrent_bots = CASE WHEN ?3 >= 0 THEN ?3"
                       " ELSE max_concurrent_bots END,"
                       " data = coalesce(?4, data) WHERE id = ?1",

    [ST_TOKEN_INSERT] = "INSERT INTO api_tokens (user_id, token_hash, created_at)"
                        " VALUES (?1, ?2, ?3)",
    [ST_TOKEN_GET] = "SELECT " TOKEN_COLS " FROM api_tokens WHERE id = ?1",
    [ST_TOKEN_LIST] = "SELECT " TOKEN_COLS " FROM api_tokens WHERE user_id = ?1 ORDER BY id",
    [ST_TOKEN_DELETE] = "DELETE FROM api_tokens WHERE id = ?1 RETURNING user_id",
    [ST_TOKEN_LOOKUP] = "SELECT user_id, id FROM api_tokens WHERE token_hash = ?1",
    [ST_TOKEN_TOUCH] = "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",

    [ST_MEETING_COUNT_ACTIVE] =
        "SELECT count(*) FROM meetings WHERE user_id = ?1 AND " ACTIVE_WHERE,
    [ST_MEETING_ACTIVE_DUP] = "SELECT id FROM meetings WHERE user_id = ?1 AND platform = ?2"
                              " AND native_meeting_id = ?3 AND " ACTIVE_WHERE,
    [ST_MEETING_INSERT] =
        "INSERT INTO meetings (user_id, platform, native_meeting_id, status, start_time,"
        " end_time, data, config, created_at, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    [ST_MEETING_GET] = "SELECT " MEETING_COLS " FROM meetings WHERE id = ?1"
                       " AND (?2 < 0 OR user_id = ?2)",
    [ST_MEETING_STATUS] = "SELECT status FROM meetings WHERE id = ?1",
    [ST_MEETING_FIND] = "SELECT " MEETING_COLS " FROM meetings WHERE user_id = ?1"
                        " AND platform = ?2 AND native_meeting_id = ?3 ORDER BY id DESC LIMIT 1",
    /* before_id is always bound (INT64_MAX for "no cursor") so the index range scan starts at the
     * cursor instead of filtering every newer row. */
    [ST_MEETING_LIST] = "SELECT " MEETING_COLS " FROM meetings WHERE user_id = ?1 AND id < ?2"
                        " ORDER BY id DESC LIMIT ?3",
    [ST_MEETING_LIST_ACTIVE] = "SELECT " MEETING_COLS " FROM meetings WHERE user_id = ?1"
                               " AND " ACTIVE_WHERE " ORDER BY id",
    [ST_MEETING_LIST_ACTIVE_ALL] =
        "SELECT " MEETING_COLS " FROM meetings WHERE " ACTIVE_WHERE " ORDER BY id",
    /* Every write moves updated_at forward (by 1 ms at least), so it identifies the version a
     * writer read: data derived from a read is written only if nothing was written since
     * (?4/?8 = that updated_at; 0 = no such condition). */
    [ST_MEETING_SET_DATA] = "UPDATE meetings SET data = ?2, updated_at = max(?3, updated_at + 1)"
                            " WHERE id = ?1 AND (?4 = 0 OR updated_at = ?4)",
    [ST_MEETING_SET_STATUS] = "UPDATE meetings SET status = ?3, data = coalesce(?4, data),"
                              " start_time = CASE WHEN ?5 != 0 THEN ?5 ELSE start_time END,"
                              " end_time = CASE WHEN ?6 != 0 THEN ?6 ELSE end_time END,"
                              " updated_at = max(?7, updated_at + 1)"
                              " WHERE id = ?1 AND status = ?2 AND (?8 = 0 OR updated_at = ?8)",
    [ST_MEETING_PURGE] = "UPDATE meetings SET data = ?2, config = '{}',"
                         " updated_at = max(?3, updated_at + 1)"
                         " WHERE id = ?1 AND (?4 = 0 OR updated_at = ?4)",
    [ST_SEGMENTS_DELETE] = "DELETE FROM segments WHERE meeting_id = ?1",
    [ST_SESSIONS_DELETE] = "DELETE FROM meeting_sessions WHERE meeting_id = ?1",

    [ST_SESSION_INSERT] = "INSERT INTO meeting_sessions (meeting_id, uid, started_at)"
                          " VALUES (?1, ?2, ?3)",
    [ST_SESSION_END] = "UPDATE meeting_sessions SET ended_at = ?2 WHERE id = ?1",
    /* created_at is not in the update list: it stays the time of the first put. */
    [ST_SEGMENT_UPSERT] =
        "INSERT INTO segments (" SEGMENT_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
        " ON CONFLICT(segment_id) DO UPDATE SET meeting_id = excluded.meeting_id,"
        " session_id = excluded.session_id, \"start\" = excluded.\"start\","
        " \"end\" = excluded.\"end\", text = excluded.text, speaker = excluded.speaker,"
        " language = excluded.language, updated_at = excluded.updated_at",
    [ST_SEGMENT_LIST] = "SELECT " SEGMENT_COLS " FROM segments WHERE meeting_id = ?1"
                        " ORDER BY \"start\", segment_id",
    [ST_SEGMENT_COUNT] = "SELECT count(*) FROM segments WHERE meeting_id = ?1",
    /* One statement, so every figure comes from the same snapshot. Rows: (kind, key, count,
     * value): 'p' per platform, 's' per status, 'd' per day (value = day number), 't' stored
     * segments (value = seconds), 'm' meetings with start and end (value = seconds). The user's
     * meetings come from meetings_user_id, their segments from segments_meeting_start. */
    [ST_ANALYTICS] =
        "SELECT 'p', platform, count(*), 0 FROM meetings WHERE user_id = ?1 GROUP BY platform"
        " UNION ALL SELECT 's', status, count(*), 0 FROM meetings WHERE user_id = ?1"
        " GROUP BY status"
        " UNION ALL SELECT 'd', NULL, count(*), (created_at + ?3) / 86400000 AS day FROM meetings"
        " WHERE user_id = ?1 AND created_at >= ?2 GROUP BY day"
        " UNION ALL SELECT 't', NULL, count(*), total(max(g.\"end\" - g.\"start\", 0))"
        " FROM meetings m JOIN segments g ON g.meeting_id = m.id WHERE m.user_id = ?1"
        " UNION ALL SELECT 'm', NULL, count(*), total(end_time - start_time) FROM meetings"
        " WHERE user_id = ?1 AND start_time IS NOT NULL AND end_time >= start_time",

    [ST_WH_GET] = "SELECT " WEBHOOK_COLS " FROM webhooks WHERE user_id = ?1",
    /* ?6 says whether the secret changes; on insert ?3 is already NULL when it does not. */
    [ST_WH_UPSERT] = "INSERT INTO webhooks (user_id, url, secret, events, created_at, updated_at)"
                     " VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT(user_id) DO UPDATE SET"
                     " url = excluded.url,"
                     " secret = CASE WHEN ?6 THEN excluded.secret ELSE secret END,"
                     " events = excluded.events, updated_at = excluded.updated_at",
    [ST_WH_DELETE] = "DELETE FROM webhooks WHERE user_id = ?1",
    [ST_DLV_REARM] = "UPDATE webhook_deliveries SET next_attempt_at = ?2, updated_at = ?2"
                     " WHERE user_id = ?1 AND state = 'pending' AND next_attempt_at > ?2",
    [ST_DLV_FAIL_USER] =
        "UPDATE webhook_deliveries SET state = 'failed', last_error = 'webhook removed',"
        " next_attempt_at = NULL, updated_at = ?2"
        " WHERE user_id = ?1 AND state IN ('pending','sending')",
    [ST_EVENT_INSERT] = "INSERT INTO webhook_events (event_id, user_id, meeting_id, event_type,"
                        " payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    /* Due now, or when the meeting's earliest-waiting open delivery is next tried, whichever is
     * later: it cannot be sent before that one finishes (ST_DLV_CLAIM), and a row that is due but
     * held back would be read again by every claim. */
    [ST_DLV_INSERT] = "INSERT INTO webhook_deliveries (event_row, user_id, meeting_id, state,"
                      " attempts, next_attempt_at, created_at, updated_at)"
                      " VALUES (?1, ?2, ?3, 'pending', 0, max(?4, coalesce((SELECT"
                      " max(next_attempt_at) FROM webhook_deliveries WHERE user_id = ?2"
                      " AND meeting_id = ?3 AND state = 'pending'), ?4)), ?4, ?4)",
    /* A retry of ?1 at ?2 holds the meeting's later deliveries until then (see ST_DLV_INSERT). */
    [ST_DLV_HOLD_LATER] = "UPDATE webhook_deliveries SET next_attempt_at = ?2"
                          " WHERE state = 'pending' AND next_attempt_at < ?2 AND id > ?1"
                          " AND (user_id, meeting_id) ="
                          " (SELECT user_id, meeting_id FROM webhook_deliveries WHERE id = ?1)",
    [ST_DLV_LIST] = "SELECT " DELIVERY_COLS " FROM webhook_deliveries d"
                    " JOIN webhook_events e ON e.id = d.event_row"
                    " WHERE d.user_id = ?1 AND d.id < ?2 ORDER BY d.id DESC LIMIT ?3",
    [ST_DLV_GET] = "SELECT " DELIVERY_COLS " FROM webhook_deliveries d"
                   " JOIN webhook_events e ON e.id = d.event_row WHERE d.id = ?1",
    [ST_DLV_EVENT] = "SELECT event_row, meeting_id FROM webhook_deliveries"
                     " WHERE id = ?1 AND user_id = ?2",
    /* Due, and first in its meeting: an earlier open delivery of the same meeting holds the
     * later ones back (per-meeting order). Events without a meeting (NULL) are not ordered. */
    [ST_DLV_CLAIM] =
        "SELECT " DELIVERY_COLS ", e.payload, w.url, w.secret FROM webhook_deliveries d"
        " JOIN webhook_events e ON e.id = d.event_row JOIN webhooks w ON w.user_id = d.user_id"
        " WHERE d.state = 'pending' AND d.next_attempt_at <= ?1 AND NOT EXISTS ("
        "SELECT 1 FROM webhook_deliveries p WHERE p.user_id = d.user_id"
        " AND p.meeting_id = d.meeting_id AND p.id < d.id AND p.state IN ('pending','sending'))"
        " ORDER BY d.next_attempt_at, d.id LIMIT ?2",
    [ST_DLV_MARK_SENDING] = "UPDATE webhook_deliveries SET state = 'sending', updated_at = ?2"
                            " WHERE id = ?1",
    [ST_DLV_NEXT_DUE] = "SELECT min(next_attempt_at) FROM webhook_deliveries"
                        " WHERE state = 'pending' AND next_attempt_at > ?1",
    [ST_DLV_RECORD] = "UPDATE webhook_deliveries SET state = ?2, attempts = ?3, last_status = ?4,"
                      " last_error = ?5, next_attempt_at = ?6,"
                      " delivered_at = CASE WHEN ?2 = 'delivered' THEN ?7 ELSE delivered_at END,"
                      " updated_at = ?7 WHERE id = ?1",
    [ST_DLV_RESET_SENDING] = "UPDATE webhook_deliveries SET state = 'pending',"
                             " next_attempt_at = ?1, updated_at = ?1 WHERE state = 'sending'",
    [ST_DLV_PRUNE] = "DELETE FROM webhook_deliveries WHERE state IN ('delivered','failed')"
                     " AND updated_at < ?1",
    [ST_EVT_PRUNE] = "DELETE FROM webhook_events WHERE created_at < ?1"
                     " AND id NOT IN (SELECT event_row FROM webhook_deliveries)",
};

typedef struct conn_s {
    sqlite3 *db;
    sqlite3_stmt *st[ST_COUNT]; /* prepared on first use, kept until close */
    struct conn_s *next_free;   /* pool free list link; only touched under pool.mu */
} conn_t;

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* signalled when a connection returns to the free list */
    conn_t *free_list; /* guarded by mu */
    conn_t *conns;     /* immutable after open */
    int nconns;
    bool ready; /* fully opened and migrated: only then is PRAGMA optimize worth running */
} sqlite_store_t;

/* ---- errors ---- */

/* Logs a failed SQLite call with the operation and maps the code: unique violations become
 * HK_ECONFLICT, missing parents (foreign keys) HK_ENOTFOUND, the rest HK_ESTORE. */
static int db_error(conn_t *c, const char *op, int rc)
{
    int ext = sqlite3_extended_errcode(c->db);
    int mapped = HK_ESTORE;
    if ((rc & 0xff) == SQLITE_CONSTRAINT) {
        if (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
            mapped = HK_ECONFLICT;
        else if (ext == SQLITE_CONSTRAINT_FOREIGNKEY)
            mapped = HK_ENOTFOUND;
    } else if ((rc & 0xff) == SQLITE_NOMEM) {
        mapped = HK_ENOMEM;
    }
    char q[512];
    hk_log_write(mapped == HK_ESTORE ? HK_LOG_ERROR : HK_LOG_WARN, MOD, "op=%s rc=%d ext=%d err=%s",
                 op, rc, ext, hk_log_quote(q, sizeof(q), sqlite3_errmsg(c->db)));
    return mapped;
}

/* ---- statements ---- */

/* The connection's cached statement `id`, prepared on first use; NULL after logging on failure. */
static sqlite3_stmt *stmt(conn_t *c, int id, const char *op)
{
    if (c->st[id] == NULL) {
        int rc = sqlite3_prepare_v3(c->db, sql_text[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id],
                                    NULL);
        if (rc != SQLITE_OK) {
            db_error(c, op, rc);
            c->st[id] = NULL;
        }
    }
    return c->st[id];
}

/* Makes a cached statement ready for its next use (and ends any read it had open). */
static void done(sqlite3_stmt *st)
{
    if (st != NULL) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Returns SQLITE_ROW or SQLITE_DONE, or a logged HK_E* code (negative). */
static int step(conn_t *c, sqlite3_stmt *st, const char *op)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        return rc;
    return db_error(c, op, rc);
}

/* Error for a failed bind: SQLite's message when it set one, else our own allocation failure. */
static int bind_error(conn_t *c, const char *op)
{
    int rc = sqlite3_errcode(c->db);
    if (rc == SQLITE_OK || rc == SQLITE_ROW || rc == SQLITE_DONE) {
        hk_log_error(MOD, "op=%s err=\"binding a parameter failed (out of memory)\"", op);
        return HK_ENOMEM;
    }
    return db_error(c, op, rc);
}

/* One parameter of a statement, bound in order to ?1, ?2, ...: written with the P_* macros and
 * handed to the helpers below as PARAMS(P_I64(id), P_TEXT(name), ...). */
typedef struct {
    enum { PT_I64, PT_OPT_I64, PT_DOUBLE, PT_TEXT, PT_JSON, PT_JSON_OBJ } type;
    union {
        int64_t i;
        double d;
        const char *s;
        const json_t *j;
    } v;
} param_t;

#define P_I64(x) ((param_t){.type = PT_I64, .v.i = (x)})
#define P_OPT_I64(x) ((param_t){.type = PT_OPT_I64, .v.i = (x)}) /* 0 binds NULL */
#define P_DOUBLE(x) ((param_t){.type = PT_DOUBLE, .v.d = (x)})
#define P_TEXT(x) ((param_t){.type = PT_TEXT, .v.s = (x)})         /* NULL binds NULL */
#define P_JSON(x) ((param_t){.type = PT_JSON, .v.j = (x)})         /* NULL binds NULL */
#define P_JSON_OBJ(x) ((param_t){.type = PT_JSON_OBJ, .v.j = (x)}) /* NULL binds {} */

/* Expands to the two arguments (array, count) that the statement helpers take last. */
#define PARAMS(...)                                                                                \
    (const param_t[]){__VA_ARGS__}, sizeof((const param_t[]){__VA_ARGS__}) / sizeof(param_t)

/* Binds a JSON object as compact text. Fails on allocation failure. */
static int bind_json(sqlite3_stmt *st, int i, const json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    if (text == NULL)
        return SQLITE_NOMEM;
    int rc = sqlite3_bind_text(st, i, text, -1, SQLITE_TRANSIENT);
    free(text);
    return rc;
}

/* Binds one parameter; true on success. Text is copied (TRANSIENT) so callers may free their
 * input at once. On failure the caller reports bind_error(). */
static bool bind_param(sqlite3_stmt *st, int i, const param_t *p)
{
    int rc;
    switch (p->type) {
    case PT_I64:
        rc = sqlite3_bind_int64(st, i, p->v.i);
        break;
    case PT_OPT_I64: /* 0 means "unset" in the structs (times, session ids): NULL in the columns */
        rc = p->v.i == 0 ? sqlite3_bind_null(st, i) : sqlite3_bind_int64(st, i, p->v.i);
        break;
    case PT_DOUBLE:
        rc = sqlite3_bind_double(st, i, p->v.d);
        break;
    case PT_TEXT:
        rc = p->v.s == NULL ? sqlite3_bind_null(st, i)
                            : sqlite3_bind_text(st, i, p->v.s, -1, SQLITE_TRANSIENT);
        break;
    case PT_JSON: /* the statements treat NULL as "keep" or use their own default */
        rc = p->v.j == NULL ? sqlite3_bind_null(st, i) : bind_json(st, i, p->v.j);
        break;
    case PT_JSON_OBJ: /* "{}" is what json_dumps() writes for an empty object */
        rc = p->v.j == NULL ? sqlite3_bind_text(st, i, "{}", -1, SQLITE_STATIC)
                            : bind_json(st, i, p->v.j);
        break;
    default:
        rc = SQLITE_MISUSE;
    }
    return rc == SQLITE_OK;
}

/* The cached statement `id` with the np params bound, in *st; 0, or the logged error with the
 * statement left reset. */
static int bind_all(conn_t *c, int id, const char *op, sqlite3_stmt **st, const param_t *p,
                    size_t np)
{
    *st = stmt(c, id, op);
    if (*st == NULL)
        return HK_ESTORE;
    for (size_t i = 0; i < np; i++) {
        if (!bind_param(*st, (int)i + 1, &p[i])) {
            int rc = bind_error(c, op);
            done(*st);
            return rc;
        }
    }
    return 0;
}

/* ---- column readers ---- */

/* Copies a text column; *ok turns false on allocation failure. SQL NULL gives NULL. */
static char *col_text(sqlite3_stmt *st, int i, bool *ok)
{
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return NULL;
    const unsigned char *t = sqlite3_column_text(st, i);
    if (t == NULL) {
        *ok = false;
        return NULL;
    }
    size_t len = (size_t)sqlite3_column_bytes(st, i);
    char *s = malloc(len + 1);
    if (s == NULL) {
        *ok = false;
        return NULL;
    }
    memcpy(s, t, len);
    s[len] = '\0';
    return s;
}

/* Parses a JSON column into an object. A value that is not a JSON object (hand-edited, damaged)
 * is logged and read as {}: one bad row must not make a meeting or user unreadable. */
static json_t *col_json(sqlite3_stmt *st, int i, const char *table, int64_t id, bool *ok)
{
    const char *t = (const char *)sqlite3_column_text(st, i);
    size_t len = (size_t)sqlite3_column_bytes(st, i);
    json_t *j = NULL;
    if (t != NULL) {
        json_error_t jerr;
        j = json_loadb(t, len, JSON_REJECT_DUPLICATES, &jerr);
        if (j == NULL || !json_is_object(j)) {
            char q[256];
            hk_log_warn(MOD, "op=read table=%s id=%" PRId64 " column=%s err=%s", table, id,
                        sqlite3_column_name(st, i),
                        hk_log_quote(q, sizeof(q), j ? "not a JSON object" : jerr.text));
            json_decref(j);
            j = NULL;
        }
    }
    if (j == NULL)
        j = json_object();
    if (j == NULL)
        *ok = false;
    return j;
}

static int read_user(sqlite3_stmt *st, hk_user_t *u)
{
    bool ok = true;
    u->id = sqlite3_column_int64(st, 0);
    u->email = col_text(st, 1, &ok);
    u->name = col_text(st, 2, &ok);
    u->max_concurrent_bots = sqlite3_column_int(st, 3);
    u->data = col_json(st, 4, "users", u->id, &ok);
    u->created_at = sqlite3_column_int64(st, 5);
    if (!ok || u->email == NULL) {
        hk_user_dispose(u);
        return HK_ENOMEM;
    }
    return 0;
}

static void read_token(sqlite3_stmt *st, hk_token_t *t)
{
    t->id = sqlite3_column_int64(st, 0);
    t->user_id = sqlite3_column_int64(st, 1);
    t->created_at = sqlite3_column_int64(st, 2);
    t->last_used_at = sqlite3_column_int64(st, 3);
}

static int read_meeting(sqlite3_stmt *st, hk_meeting_t *m)
{
    bool ok = true;
    m->id = sqlite3_column_int64(st, 0);
    m->user_id = sqlite3_column_int64(st, 1);
    m->platform = col_text(st, 2, &ok);
    m->native_meeting_id = col_text(st, 3, &ok);
    m->status = col_text(st, 4, &ok);
    m->start_time = sqlite3_column_int64(st, 5);
    m->end_time = sqlite3_column_int64(st, 6);
    m->created_at = sqlite3_column_int64(st, 7);
    m->updated_at = sqlite3_column_int64(st, 8);
    m->data = col_json(st, 9, "meetings", m->id, &ok);
    m->config = col_json(st, 10, "meetings", m->id, &ok);
    if (!ok || !m->platform || !m->native_meeting_id || !m->status) {
        hk_meeting_dispose(m);
        return HK_ENOMEM;
    }
    return 0;
}

static int read_segment(sqlite3_stmt *st, hk_segment_t *g)
{
    bool ok = true;
    g->segment_id = col_text(st, 0, &ok);
    g->meeting_id = sqlite3_column_int64(st, 1);
    g->session_id = sqlite3_column_int64(st, 2);
    g->start = sqlite3_column_double(st, 3);
    g->end = sqlite3_column_double(st, 4);
    g->text = col_text(st, 5, &ok);
    g->speaker = col_text(st, 6, &ok);
    g->language = col_text(st, 7, &ok);
    g->created_at = sqlite3_column_int64(st, 8);
    g->updated_at = sqlite3_column_int64(st, 9);
    if (!ok || !g->segment_id || !g->text) {
        hk_segment_dispose(g);
        return HK_ENOMEM;
    }
    return 0;
}

/* Adapters so the statement helpers can take the typed readers. */
static int read_user_v(sqlite3_stmt *st, void *p)
{
    return read_user(st, p);
}

static int read_meeting_v(sqlite3_stmt *st, void *p)
{
    return read_meeting(st, p);
}

static int read_segment_v(sqlite3_stmt *st, void *p)
{
    return read_segment(st, p);
}

static int read_token_v(sqlite3_stmt *st, void *p)
{
    read_token(st, p);
    return 0;
}

/* A single integer column (count(*), id, min()) into an int64_t. */
static int read_i64_v(sqlite3_stmt *st, void *p)
{
    *(int64_t *)p = sqlite3_column_int64(st, 0);
    return 0;
}

/* Two integer columns (a pair of ids) into an int64_t[2]. */
static int read_i64_pair_v(sqlite3_stmt *st, void *p)
{
    int64_t *v = p;
    v[0] = sqlite3_column_int64(st, 0);
    v[1] = sqlite3_column_int64(st, 1);
    return 0;
}

static void free_users_v(void *v, size_t n)
{
    hk_store_free_users(v, n);
}

static void free_meetings_v(void *v, size_t n)
{
    hk_store_free_meetings(v, n);
}

static void free_segments_v(void *v, size_t n)
{
    hk_store_free_segments(v, n);
}

static void free_plain_v(void *v, size_t n)
{
    HK_UNUSED(n);
    free(v);
}

/* How query_all() builds an array of one struct type: element size, row reader, and how to free
 * the rows read so far when it fails. */
typedef struct {
    size_t size;
    int (*read)(sqlite3_stmt *, void *);
    void (*dispose_all)(void *, size_t);
} row_type_t;

static const row_type_t user_rows = {sizeof(hk_user_t), read_user_v, free_users_v};
static const row_type_t token_rows = {sizeof(hk_token_t), read_token_v, free_plain_v};
static const row_type_t meeting_rows = {sizeof(hk_meeting_t), read_meeting_v, free_meetings_v};
static const row_type_t segment_rows = {sizeof(hk_segment_t), read_segment_v, free_segments_v};

/* ---- running one statement ---- */

/* Each helper takes the cached statement `id`, binds the np params (PARAMS(...)) to ?1..?np,
 * runs it and leaves it reset; errors are logged and mapped by db_error()/bind_error(). */

/* Runs statement `id` once: a write, or a query whose rows are not wanted (ping); 0 or the
 * logged error. */
static int exec_stmt(conn_t *c, int id, const char *op, const param_t *p, size_t np)
{
    sqlite3_stmt *st;
    int rc = bind_all(c, id, op, &st, p, np);
    if (rc != 0)
        return rc;
    rc = step(c, st, op);
    done(st);
    return rc < 0 ? rc : 0;
}

/* exec_stmt() for a write that must change a row: HK_ENOTFOUND when it changed none. */
static int exec_changed(conn_t *c, int id, const char *op, const param_t *p, size_t np)
{
    int rc = exec_stmt(c, id, op, p, np);
    if (rc == 0 && sqlite3_changes(c->db) == 0)
        rc = HK_ENOTFOUND;
    return rc;
}

/* Runs query `id`, which returns at most one row, and reads that row into `out` with `read`;
 * HK_ENOTFOUND when there is none. */
static int query_one(conn_t *c, int id, const char *op, int (*read)(sqlite3_stmt *, void *),
                     void *out, const param_t *p, size_t np)
{
    sqlite3_stmt *st;
    int rc = bind_all(c, id, op, &st, p, np);
    if (rc != 0)
        return rc;
    rc = step(c, st, op);
    if (rc == SQLITE_ROW)
        rc = read(st, out);
    else if (rc == SQLITE_DONE)
        rc = HK_ENOTFOUND;
    done(st);
    return rc;
}

/* Runs query `id` and collects every row into a malloc'd array in *out (NULL when empty) and
 * its length in *n. On failure disposes the rows read so far and returns the error. */
static int query_all(conn_t *c, int id, const char *op, const row_type_t *rows, void **out,
                     size_t *n, const param_t *p, size_t np)
{
    sqlite3_stmt *st;
    int rc = bind_all(c, id, op, &st, p, np);
    if (rc != 0)
        return rc;
    char *v = NULL;
    size_t len = 0, cap = 0;
    while ((rc = step(c, st, op)) == SQLITE_ROW) {
        if (len == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char *nv = realloc(v, ncap * rows->size);
            if (nv == NULL) {
                rc = HK_ENOMEM;
                break;
            }
            v = nv;
            cap = ncap;
        }
        memset(v + len * rows->size, 0, rows->size);
        rc = rows->read(st, v + len * rows->size);
        if (rc != 0)
            break;
        len++;
    }
    done(st);
    if (rc != SQLITE_DONE) {
        rows->dispose_all(v, len);
        return rc < 0 ? rc : HK_ESTORE;
    }
    if (len == 0) {
        free(v);
        v = NULL;
    }
    *out = v;
    *n = len;
    return 0;
}

/* ---- pool ---- */

/* Blocks until a connection is free. The pool is sized by configuration: a caller that waits here
 * is simply queued behind the others, never failed. */
static conn_t *acquire(sqlite_store_t *S)
{
    pthread_mutex_lock(&S->mu);
    while (S->free_list == NULL)
        pthread_cond_wait(&S->cv, &S->mu);
    conn_t *c = S->free_list;
    S->free_list = c->next_free;
    pthread_mutex_unlock(&S->mu);
    return c;
}

static void release(sqlite_store_t *S, conn_t *c)
{
    pthread_mutex_lock(&S->mu);
    c->next_free = S->free_list;
    S->free_list = c;
    pthread_cond_signal(&S->cv);
    pthread_mutex_unlock(&S->mu);
}

/* ---- transactions ---- */

/* BEGIN IMMEDIATE takes the write lock up front: read-then-write sequences (limit checks, CAS)
 * cannot interleave with another writer, and lock waits happen here under busy_timeout instead
 * of failing with SQLITE_BUSY halfway through (a deferred transaction cannot upgrade safely). */
static int tx_begin(conn_t *c, const char *op)
{
    return exec_stmt(c, ST_BEGIN, op, NULL, 0);
}

/* Commits when rc is 0, otherwise rolls back; returns rc or the commit failure. */
static int tx_end(conn_t *c, int rc, const char *op)
{
    if (rc == 0) {
        rc = exec_stmt(c, ST_COMMIT, op, NULL, 0);
        if (rc == 0)
            return 0;
    }
    /* Some errors (I/O, full disk, busy) make SQLite roll back by itself; ROLLBACK would then fail
     * with "no transaction is active", so only issue it while a transaction is open. */
    if (!sqlite3_get_autocommit(c->db))
        exec_stmt(c, ST_ROLLBACK, op, NULL, 0);
    return rc;
}

/* ---- connection setup ---- */

static int exec_pragma(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    snprintf(err, errlen, "%s failed: %s", sql, msg ? msg : sqlite3_errmsg(db));
    hk_log_error(MOD, "op=open sql=\"%s\" err=\"%s\"", sql, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return HK_ESTORE;
}

/* journal_mode answers with the mode in effect, which is not WAL on filesystems that cannot do
 * it (no shared memory); refuse to run then rather than silently lose concurrency. */
static int set_wal(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL);
    bool wal = false;
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        const char *mode = (const char *)sqlite3_column_text(st, 0);
        wal = mode != NULL && strcmp(mode, "wal") == 0;
    }
    sqlite3_finalize(st);
    if (!wal) {
        snprintf(err, errlen, "cannot enable WAL journal mode: %s", sqlite3_errmsg(db));
        hk_log_error(MOD, "op=open err=\"cannot enable WAL journal mode: %s\"", sqlite3_errmsg(db));
        return HK_ESTORE;
    }
    return 0;
}

static int conn_open(conn_t *c, const char *path, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(path, &c->db, flags, NULL);
    if (rc != SQLITE_OK) {
        const char *msg = c->db ? sqlite3_errmsg(c->db) : sqlite3_errstr(rc);
        snprintf(err, errlen, "cannot open database \"%s\": %s", path, msg);
        hk_log_error(MOD, "op=open path=\"%s\" err=\"%s\"", path, msg);
        return HK_ESTORE;
    }
    sqlite3_extended_result_codes(c->db, 1);
    sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
    if (set_wal(c->db, err, errlen) != 0 ||
        exec_pragma(c->db, "PRAGMA synchronous=NORMAL", err, errlen) != 0 ||
        exec_pragma(c->db, "PRAGMA foreign_keys=ON", err, errlen) != 0)
        return HK_ESTORE;
    return 0;
}

static void conn_close(conn_t *c)
{
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close(c->db); /* everything is finalised, so this cannot be refused */
    memset(c, 0, sizeof(*c));
}

static void sq_close(void *impl)
{
    sqlite_store_t *S = impl;
    if (S == NULL)
        return;
    /* SQLite's advice for long-lived databases: refresh planner statistics where they went stale,
     * once, at close. Failure only means older statistics. */
    if (S->ready)
        sqlite3_exec(S->conns[0].db, "PRAGMA optimize", NULL, NULL, NULL);
    for (int i = 0; i < S->nconns; i++)
        conn_close(&S->conns[i]);
    free(S->conns);
    pthread_cond_destroy(&S->cv);
    pthread_mutex_destroy(&S->mu);
    free(S);
}

/* ---- operations ---- */

static int sq_ping(void *impl)
{
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = exec_stmt(c, ST_PING, "ping", NULL, 0);
    release(S, c);
    return rc;
}

/* Reads the user `id` on an acquired connection (inside or outside a transaction). */
static int user_get_c(conn_t *c, int64_t id, hk_user_t *out, const char *op)
{
    return query_one(c, ST_USER_GET, op, read_user_v, out, PARAMS(P_I64(id)));
}

static int user_get_email_c(conn_t *c, const char *email, hk_user_t *out, const char *op)
{
    return query_one(c, ST_USER_GET_EMAIL, op, read_user_v, out, PARAMS(P_TEXT(email)));
}

static int sq_user_upsert(void *impl, const char *email, const char *name, int max_bots,
                          const json_t *data, hk_user_t *out, bool *created)
{
    static const char op[] = "user_upsert";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        /* Under the write lock nobody can insert the same email between this read and the
         * insert, so the unique index never fires here in practice. */
        rc = user_get_email_c(c, email, out, op);
        if (rc == HK_ENOTFOUND) {
            rc = exec_stmt(c, ST_USER_INSERT, op,
                           PARAMS(P_TEXT(email), P_TEXT(name), P_I64(max_bots), P_JSON_OBJ(data),
                                  P_I64(hk_time_now_ms())));
            if (rc == 0)
                rc = user_get_c(c, sqlite3_last_insert_rowid(c->db), out, op);
            if (rc == 0)
                *created = true;
        }
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    if (rc != 0)
        hk_user_dispose(out);
    return rc;
}

static int sq_user_get(void *impl, int64_t id, hk_user_t *out)
{
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = user_get_c(c, id, out, "user_get");
    release(S, c);
    return rc;
}

static int sq_user_get_by_email(void *impl, const char *email, hk_user_t *out)
{
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = user_get_email_c(c, email, out, "user_get_by_email");
    release(S, c);
    return rc;
}

static int sq_user_list(void *impl, int limit, int offset, hk_user_t **out, size_t *n)
{
    static const char op[] = "user_list";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    /* A negative LIMIT means "no limit" to SQLite, which is what a negative limit means here. */
    int rc = query_all(c, ST_USER_LIST, op, &user_rows, (void **)out, n,
                       PARAMS(P_I64(limit), P_I64(offset)));
    release(S, c);
    return rc;
}

static int sq_user_update(void *impl, int64_t id, const char *name, int max_bots,
                          const json_t *data, hk_user_t *out)
{
    static const char op[] = "user_update";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        rc = exec_changed(c, ST_USER_UPDATE, op,
                          PARAMS(P_I64(id), P_TEXT(name), P_I64(max_bots), P_JSON(data)));
        if (rc == 0)
            rc = user_get_c(c, id, out, op);
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    if (rc != 0)
        hk_user_dispose(out);
    return rc;
}

static int sq_token_create(void *impl, int64_t user_id, const char *hash_hex, hk_token_t *out)
{
    static const char op[] = "token_create";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        /* An unknown user_id fails the foreign key (→ HK_ENOTFOUND); a digest already stored
         * fails the unique index (→ HK_ECONFLICT). */
        rc = exec_stmt(c, ST_TOKEN_INSERT, op,
                       PARAMS(P_I64(user_id), P_TEXT(hash_hex), P_I64(hk_time_now_ms())));
        if (rc == 0)
            rc = query_one(c, ST_TOKEN_GET, op, read_token_v, out,
                           PARAMS(P_I64(sqlite3_last_insert_rowid(c->db))));
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    return rc;
}

static int sq_token_list(void *impl, int64_t user_id, hk_token_t **out, size_t *n)
{
    static const char op[] = "token_list";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = query_all(c, ST_TOKEN_LIST, op, &token_rows, (void **)out, n, PARAMS(P_I64(user_id)));
    release(S, c);
    return rc;
}

static int sq_token_delete(void *impl, int64_t token_id, int64_t *user_id_out)
{
    static const char op[] = "token_delete";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        sqlite3_stmt *st;
        rc = bind_all(c, ST_TOKEN_DELETE, op, &st, PARAMS(P_I64(token_id)));
        if (rc == 0) {
            rc = step(c, st, op);
            if (rc == SQLITE_ROW) {
                *user_id_out = sqlite3_column_int64(st, 0);
                /* RETURNING rows are produced before the statement completes: step to the end
                 * so the delete is finished before COMMIT. */
                rc = step(c, st, op);
                rc = rc == SQLITE_DONE ? 0 : rc;
            } else if (rc == SQLITE_DONE) {
                rc = HK_ENOTFOUND;
            }
            done(st);
        }
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    return rc;
}

static int sq_token_lookup(void *impl, const char *hash_hex, int64_t *user_id, int64_t *token_id)
{
    static const char op[] = "token_lookup";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int64_t ids[2] = {0, 0};
    int rc = query_one(c, ST_TOKEN_LOOKUP, op, read_i64_pair_v, ids, PARAMS(P_TEXT(hash_hex)));
    release(S, c);
    if (rc == 0) {
        *user_id = ids[0];
        *token_id = ids[1];
    }
    return rc;
}

/* Runs a single-statement write (id bound to ?1, int64 value to ?2) in its own transaction;
 * HK_ENOTFOUND when no row matched. */
static int update_by_id(sqlite_store_t *S, int id_stmt, int64_t id, int64_t value, const char *op)
{
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        rc = exec_changed(c, id_stmt, op, PARAMS(P_I64(id), P_I64(value)));
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    return rc;
}

static int sq_token_touch(void *impl, int64_t token_id, int64_t at_ms)
{
    return update_by_id(impl, ST_TOKEN_TOUCH, token_id, at_ms ? at_ms : hk_time_now_ms(),
                        "token_touch");
}

/* Reads meeting `id` (of user_id, or any user when negative) on an acquired connection. */
static int meeting_get_c(conn_t *c, int64_t user_id, int64_t id, hk_meeting_t *out, const char *op)
{
    return query_one(c, ST_MEETING_GET, op, read_meeting_v, out, PARAMS(P_I64(id), P_I64(user_id)));
}

static int meeting_create_c(conn_t *c, const hk_meeting_t *in, int max_active, const char *op)
{
    /* Duplicate first: asking again for a meeting that is already running is a 409 even when the
     * user is at the limit, which tells the client more than a 429 would. */
    int64_t v = 0;
    int rc =
        query_one(c, ST_MEETING_ACTIVE_DUP, op, read_i64_v, &v,
                  PARAMS(P_I64(in->user_id), P_TEXT(in->platform), P_TEXT(in->native_meeting_id)));
    if (rc == 0)
        return HK_ECONFLICT;
    if (rc != HK_ENOTFOUND)
        return rc;

    if (max_active >= 0 && !hk_meeting_status_terminal(in->status)) {
        rc = query_one(c, ST_MEETING_COUNT_ACTIVE, op, read_i64_v, &v, PARAMS(P_I64(in->user_id)));
        if (rc != 0)
            return rc;
        if (v >= max_active)
            return HK_ELIMIT;
    }

    return exec_stmt(c, ST_MEETING_INSERT, op,
                     PARAMS(P_I64(in->user_id), P_TEXT(in->platform), P_TEXT(in->native_meeting_id),
                            P_TEXT(in->status), P_OPT_I64(in->start_time), P_OPT_I64(in->end_time),
                            P_JSON_OBJ(in->data), P_JSON_OBJ(in->config), P_I64(hk_time_now_ms())));
}

/* ---- webhook outbox ---- */

static int read_webhook(sqlite3_stmt *st, hk_webhook_cfg_t *w)
{
    bool ok = true;
    w->user_id = sqlite3_column_int64(st, 0);
    w->url = col_text(st, 1, &ok);
    w->secret = col_text(st, 2, &ok);
    w->events = NULL;
    if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
        const char *t = (const char *)sqlite3_column_text(st, 3);
        json_t *j = t ? json_loadb(t, (size_t)sqlite3_column_bytes(st, 3), 0, NULL) : NULL;
        if (j != NULL && !json_is_array(j)) {
            json_decref(j);
            j = NULL;
        }
        /* A damaged filter reads as "every event" rather than silently dropping events. */
        w->events = j;
    }
    w->created_at = sqlite3_column_int64(st, 4);
    w->updated_at = sqlite3_column_int64(st, 5);
    if (!ok || w->url == NULL) {
        hk_webhook_cfg_dispose(w);
        return HK_ENOMEM;
    }
    return 0;
}

static int read_webhook_v(sqlite3_stmt *st, void *p)
{
    return read_webhook(st, p);
}

/* Reads the DELIVERY_COLS columns (and, with `claim`, payload, url, secret after them). */
static int read_delivery(sqlite3_stmt *st, hk_delivery_t *d, bool claim)
{
    bool ok = true;
    d->id = sqlite3_column_int64(st, 0);
    d->user_id = sqlite3_column_int64(st, 1);
    d->meeting_id = sqlite3_column_int64(st, 2);
    d->event_id = col_text(st, 3, &ok);
    d->event_type = col_text(st, 4, &ok);
    d->event_created_at = sqlite3_column_int64(st, 5);
    d->state = col_text(st, 6, &ok);
    d->attempts = sqlite3_column_int(st, 7);
    d->last_status = sqlite3_column_int(st, 8);
    d->last_error = col_text(st, 9, &ok);
    d->next_attempt_at = sqlite3_column_int64(st, 10);
    d->delivered_at = sqlite3_column_int64(st, 11);
    d->created_at = sqlite3_column_int64(st, 12);
    d->updated_at = sqlite3_column_int64(st, 13);
    if (claim) {
        d->payload = col_text(st, 14, &ok);
        d->url = col_text(st, 15, &ok);
        d->secret = col_text(st, 16, &ok);
    }
    if (!ok || !d->event_id || !d->event_type || !d->state || (claim && (!d->payload || !d->url))) {
        hk_delivery_dispose(d);
        return HK_ENOMEM;
    }
    return 0;
}

static int read_delivery_v(sqlite3_stmt *st, void *p)
{
    return read_delivery(st, p, false);
}

static int read_claim_v(sqlite3_stmt *st, void *p)
{
    return read_delivery(st, p, true);
}

static void free_deliveries_v(void *v, size_t n)
{
    hk_store_free_deliveries(v, n);
}

static const row_type_t delivery_rows = {sizeof(hk_delivery_t), read_delivery_v, free_deliveries_v};
static const row_type_t claim_rows = {sizeof(hk_delivery_t), read_claim_v, free_deliveries_v};

/* The user's webhook on an acquired connection; HK_ENOTFOUND when none. */
static int webhook_get_c(conn_t *c, int64_t user_id, hk_webhook_cfg_t *out, const char *op)
{
    return query_one(c, ST_WH_GET, op, read_webhook_v, out, PARAMS(P_I64(user_id)));
}

/* True when the filter (array of types, NULL = all) takes `type`. */
static bool filter_takes(const json_t *events, const char *type)
{
    if (events == NULL)
        return true;
    size_t i;
    json_t *v;
    json_array_foreach(events, i, v)
    {
        const char *t = json_string_value(v);
        if (t != NULL && strcmp(t, type) == 0)
            return true;
    }
    return false;
}

/* Inserts a pending delivery of event row `event_row`, due at `now`. */
static int delivery_insert_c(conn_t *c, int64_t event_row, int64_t user_id, int64_t meeting_id,
                             int64_t now, const char *op)
{
    return exec_stmt(c, ST_DLV_INSERT, op,
                     PARAMS(P_I64(event_row), P_I64(user_id), P_OPT_I64(meeting_id), P_I64(now)));
}

/* Inside the caller's transaction: builds the events of meeting `m` (as just written), stores
 * them and the deliveries the user's webhook takes; *armed counts the deliveries. */
static int events_write_c(conn_t *c, const hk_store_events_t *ev, const hk_meeting_t *m, int *armed,
                          const char *op)
{
    int64_t segments = 0;
    int rc = query_one(c, ST_SEGMENT_COUNT, op, read_i64_v, &segments, PARAMS(P_I64(m->id)));
    if (rc != 0)
        return rc;
    json_t *list = ev->build(m, segments, ev->arg);
    if (!json_is_array(list)) {
        json_decref(list);
        hk_log_error(MOD, "op=%s err=\"building the events failed\"", op);
        return HK_ENOMEM;
    }
    hk_webhook_cfg_t wh;
    memset(&wh, 0, sizeof(wh));
    rc = webhook_get_c(c, m->user_id, &wh, op);
    bool has_webhook = rc == 0;
    if (rc == HK_ENOTFOUND)
        rc = 0;
    int64_t now = hk_time_now_ms();
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        if (rc != 0)
            break;
        const char *event_id = json_string_value(json_object_get(e, "event_id"));
        const char *type = json_string_value(json_object_get(e, "event_type"));
        char *payload = json_dumps(e, JSON_COMPACT);
        if (event_id == NULL || type == NULL || payload == NULL) {
            free(payload);
            rc = HK_EINVAL;
            break;
        }
        rc = exec_stmt(c, ST_EVENT_INSERT, op,
                       PARAMS(P_TEXT(event_id), P_I64(m->user_id), P_I64(m->id), P_TEXT(type),
                              P_TEXT(payload), P_I64(now)));
        free(payload);
        if (rc == 0 && has_webhook && filter_takes(wh.events, type)) {
            rc = delivery_insert_c(c, sqlite3_last_insert_rowid(c->db), m->user_id, m->id, now, op);
            if (rc == 0)
                (*armed)++;
        }
    }
    hk_webhook_cfg_dispose(&wh);
    json_decref(list);
    if (rc != 0)
        *armed = 0;
    return rc;
}

static int sq_meeting_create(void *impl, const hk_meeting_t *in, int max_active,
                             const hk_store_events_t *ev, int *armed, hk_meeting_t *out)
{
    static const char op[] = "meeting_create";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        rc = meeting_create_c(c, in, max_active, op);
        if (rc == 0)
            rc = meeting_get_c(c, -1, sqlite3_last_insert_rowid(c->db), out, op);
        if (rc == 0 && ev != NULL)
            rc = events_write_c(c, ev, out, armed, op);
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    if (rc != 0)
        hk_meeting_dispose(out);
    return rc;
}

static int sq_meeting_get(void *impl, int64_t user_id, int64_t id, hk_meeting_t *out)
{
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = meeting_get_c(c, user_id, id, out, "meeting_get");
    release(S, c);
    return rc;
}

static int sq_meeting_find(void *impl, int64_t user_id, const char *platform, const char *native_id,
                           hk_meeting_t *out)
{
    static const char op[] = "meeting_find";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = query_one(c, ST_MEETING_FIND, op, read_meeting_v, out,
                       PARAMS(P_I64(user_id), P_TEXT(platform), P_TEXT(native_id)));
    release(S, c);
    return rc;
}

/* One page of a user's rows, newest first: statement `id` takes ?1 user, ?2 "ids below" (none:
 * INT64_MAX) and ?3 limit; rows are read into an array as query_all() does. */
static int list_page(sqlite_store_t *S, int id, const char *op, int64_t user_id, int64_t before_id,
                     int limit, const row_type_t *rows, void **out, size_t *n)
{
    conn_t *c = acquire(S);
    int rc = query_all(
        c, id, op, rows, out, n,
        PARAMS(P_I64(user_id), P_I64(before_id > 0 ? before_id : INT64_MAX), P_I64(limit)));
    release(S, c);
    return rc;
}

static int sq_meeting_list(void *impl, int64_t user_id, int limit, int64_t before_id,
                           hk_meeting_t **out, size_t *n)
{
    return list_page(impl, ST_MEETING_LIST, "meeting_list", user_id, before_id, limit,
                     &meeting_rows, (void **)out, n);
}

static int sq_meeting_list_active(void *impl, int64_t user_id, hk_meeting_t **out, size_t *n)
{
    static const char op[] = "meeting_list_active";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc;
    if (user_id < 0)
        rc = query_all(c, ST_MEETING_LIST_ACTIVE_ALL, op, &meeting_rows, (void **)out, n, NULL, 0);
    else
        rc = query_all(c, ST_MEETING_LIST_ACTIVE, op, &meeting_rows, (void **)out, n,
                       PARAMS(P_I64(user_id)));
    release(S, c);
    return rc;
}

/* Reads the meeting back after a write, when the caller asked for it. */
static int reread(conn_t *c, int rc, int64_t id, hk_meeting_t *out, const char *op)
{
    if (rc == 0 && out != NULL)
        rc = meeting_get_c(c, -1, id, out, op);
    return rc;
}

static int meeting_status_c(conn_t *c, int64_t id, bool *terminal, const char *op);

static int sq_meeting_set_data(void *impl, int64_t id, int64_t expect_updated_at,
                               const json_t *data, hk_meeting_t *out)
{
    static const char op[] = "meeting_set_data";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        rc = exec_stmt(
            c, ST_MEETING_SET_DATA, op,
            PARAMS(P_I64(id), P_JSON(data), P_I64(hk_time_now_ms()), P_I64(expect_updated_at)));
        if (rc == 0 && sqlite3_changes(c->db) == 0) {
            bool terminal; /* no such meeting, or written since the caller read it */
            rc = meeting_status_c(c, id, &terminal, op);
            if (rc == 0)
                rc = HK_ECONFLICT;
        }
        rc = reread(c, rc, id, out, op);
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    if (rc != 0)
        hk_meeting_dispose(out);
    return rc;
}

static int read_terminal_v(sqlite3_stmt *st, void *p)
{
    *(bool *)p = hk_meeting_status_terminal((const char *)sqlite3_column_text(st, 0));
    return 0;
}

/* Whether meeting `id` is in a terminal status: 0 and *terminal, or HK_ENOTFOUND. */
static int meeting_status_c(conn_t *c, int64_t id, bool *terminal, const char *op)
{
    return query_one(c, ST_MEETING_STATUS, op, read_terminal_v, terminal, PARAMS(P_I64(id)));
}

static int sq_meeting_set_status(void *impl, int64_t id, const char *expect_status,
                                 int64_t expect_updated_at, const char *new_status,
                                 const json_t *data, int64_t start_time, int64_t end_time,
                                 const hk_store_events_t *ev, int *armed, hk_meeting_t *out)
{
    static const char op[] = "meeting_set_status";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        /* A unique violation here means reviving a terminal meeting while another live one holds
         * its native id: also a conflict for the caller. */
        rc = exec_stmt(c, ST_MEETING_SET_STATUS, op,
                       PARAMS(P_I64(id), P_TEXT(expect_status), P_TEXT(new_status), P_JSON(data),
                              P_I64(start_time), P_I64(end_time), P_I64(hk_time_now_ms()),
                              P_I64(expect_updated_at)));
        if (rc == 0 && sqlite3_changes(c->db) == 0) {
            /* The compare failed: tell "someone else moved it" from "no such meeting". */
            bool terminal;
            rc = meeting_status_c(c, id, &terminal, op);
            if (rc == 0)
                rc = HK_ECONFLICT;
        }
        /* Events need the meeting as written; store.c always passes an out struct. */
        rc = reread(c, rc, id, out, op);
        if (rc == 0 && ev != NULL)
            rc = events_write_c(c, ev, out, armed, op);
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    if (rc != 0)
        hk_meeting_dispose(out);
    return rc;
}

static int sq_meeting_purge(void *impl, int64_t id, int64_t expect_updated_at, const json_t *data)
{
    static const char op[] = "meeting_purge";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        bool terminal = false;
        rc = meeting_status_c(c, id, &terminal, op);
        if (rc == 0 && !terminal)
            rc = HK_ESTATE;
        if (rc == 0)
            rc = exec_stmt(c, ST_MEETING_PURGE, op,
                           PARAMS(P_I64(id), P_JSON_OBJ(data), P_I64(hk_time_now_ms()),
                                  P_I64(expect_updated_at)));
        if (rc == 0 && sqlite3_changes(c->db) == 0)
            rc = HK_ECONFLICT; /* written since the caller read it (it exists: checked above) */
        if (rc == 0)
            rc = exec_stmt(c, ST_SEGMENTS_DELETE, op, PARAMS(P_I64(id)));
        if (rc == 0)
            rc = exec_stmt(c, ST_SESSIONS_DELETE, op, PARAMS(P_I64(id)));
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    return rc;
}

static int sq_session_create(void *impl, int64_t meeting_id, const char *uid, int64_t started_at,
                             int64_t *session_id)
{
    static const char op[] = "session_create";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        /* started_at is NOT NULL: "unset" means now. An unknown meeting fails the foreign key
         * (→ HK_ENOTFOUND). */
        rc = exec_stmt(c, ST_SESSION_INSERT, op,
                       PARAMS(P_I64(meeting_id), P_TEXT(uid),
                              P_I64(started_at ? started_at : hk_time_now_ms())));
        if (rc == 0)
            *session_id = sqlite3_last_insert_rowid(c->db);
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    if (rc != 0)
        *session_id = 0;
    return rc;
}

static int sq_session_end(void *impl, int64_t session_id, int64_t ended_at)
{
    return update_by_id(impl, ST_SESSION_END, session_id, ended_at ? ended_at : hk_time_now_ms(),
                        "session_end");
}

static int segment_put_c(conn_t *c, const hk_segment_t *g, int64_t now, const char *op)
{
    return exec_stmt(c, ST_SEGMENT_UPSERT, op,
                     PARAMS(P_TEXT(g->segment_id), P_I64(g->meeting_id), P_OPT_I64(g->session_id),
                            P_DOUBLE(g->start), P_DOUBLE(g->end), P_TEXT(g->text),
                            P_TEXT(g->speaker), P_TEXT(g->language),
                            P_I64(g->created_at ? g->created_at : now),
                            P_I64(g->updated_at ? g->updated_at : now)));
}

static int sq_segments_put(void *impl, const hk_segment_t *v, size_t n)
{
    static const char op[] = "segments_put";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        /* One timestamp for the batch: the segments were produced together. */
        int64_t now = hk_time_now_ms();
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = segment_put_c(c, &v[i], now, op);
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    return rc;
}

static int sq_segments_list(void *impl, int64_t meeting_id, hk_segment_t **out, size_t *n)
{
    static const char op[] = "segments_list";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = query_all(c, ST_SEGMENT_LIST, op, &segment_rows, (void **)out, n,
                       PARAMS(P_I64(meeting_id)));
    release(S, c);
    return rc;
}

static int sq_segments_count(void *impl, int64_t meeting_id, int64_t *n)
{
    static const char op[] = "segments_count";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = query_one(c, ST_SEGMENT_COUNT, op, read_i64_v, n, PARAMS(P_I64(meeting_id)));
    release(S, c);
    return rc;
}

/* Appends one counted group to *v (growing it); false when out of memory. */
static bool push_count(hk_store_count_t **v, size_t *n, const char *key, int64_t day, int64_t count)
{
    if ((*n & (*n - 1)) == 0) { /* 0, 1, 2, 4, ...: grow to the next power of two */
        hk_store_count_t *nv = realloc(*v, (*n ? *n * 2 : 1) * sizeof(**v));
        if (nv == NULL)
            return false;
        *v = nv;
    }
    hk_store_count_t *e = &(*v)[*n];
    e->key = key ? strdup(key) : NULL;
    if (key && !e->key)
        return false;
    e->day = day;
    e->count = count;
    (*n)++;
    return true;
}

static int sq_analytics(void *impl, int64_t user_id, int64_t since_ms, int64_t tz_offset_ms,
                        hk_analytics_t *out)
{
    static const char op[] = "analytics";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    sqlite3_stmt *st;
    int rc = bind_all(c, ST_ANALYTICS, op, &st,
                      PARAMS(P_I64(user_id), P_I64(since_ms), P_I64(tz_offset_ms)));
    if (rc == 0) {
        while ((rc = step(c, st, op)) == SQLITE_ROW) {
            const char *kind = (const char *)sqlite3_column_text(st, 0);
            const char *key = (const char *)sqlite3_column_text(st, 1);
            int64_t count = sqlite3_column_int64(st, 2);
            bool ok = true;
            switch (kind ? kind[0] : 0) {
            case 'p':
                ok = push_count(&out->by_platform, &out->nplatform, key ? key : "", 0, count);
                break;
            case 's':
                ok = push_count(&out->by_status, &out->nstatus, key ? key : "", 0, count);
                break;
            case 'd':
                ok =
                    push_count(&out->per_day, &out->nday, NULL, sqlite3_column_int64(st, 3), count);
                break;
            case 't':
                out->segments = count;
                out->segment_seconds = sqlite3_column_double(st, 3);
                break;
            case 'm':
                out->timed_meetings = count;
                out->meeting_seconds = sqlite3_column_double(st, 3) / 1000.0;
                break;
            }
            if (!ok) {
                rc = HK_ENOMEM;
                break;
            }
        }
        if (rc == SQLITE_DONE)
            rc = 0;
        else if (rc > 0)
            rc = HK_ESTORE;
        done(st);
    }
    release(S, c);
    return rc;
}

static int sq_webhook_put(void *impl, int64_t user_id, const char *url, bool set_secret,
                          const char *secret, const json_t *events, int *armed,
                          hk_webhook_cfg_t *out)
{
    static const char op[] = "webhook_put";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int64_t now = hk_time_now_ms();
    int rc = tx_begin(c, op);
    if (rc == 0) {
        rc = exec_stmt(c, ST_WH_UPSERT, op,
                       PARAMS(P_I64(user_id), P_TEXT(url), P_TEXT(set_secret ? secret : NULL),
                              P_JSON(events), P_I64(now), P_I64(set_secret ? 1 : 0)));
        if (rc == 0) {
            rc = exec_stmt(c, ST_DLV_REARM, op, PARAMS(P_I64(user_id), P_I64(now)));
            if (rc == 0)
                *armed = sqlite3_changes(c->db);
        }
        if (rc == 0)
            rc = webhook_get_c(c, user_id, out, op);
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    if (rc != 0) {
        *armed = 0;
        hk_webhook_cfg_dispose(out);
    }
    return rc;
}

static int sq_webhook_get(void *impl, int64_t user_id, hk_webhook_cfg_t *out)
{
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = webhook_get_c(c, user_id, out, "webhook_get");
    release(S, c);
    return rc;
}

static int sq_webhook_delete(void *impl, int64_t user_id)
{
    static const char op[] = "webhook_delete";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        rc = exec_changed(c, ST_WH_DELETE, op, PARAMS(P_I64(user_id)));
        if (rc == 0)
            rc =
                exec_stmt(c, ST_DLV_FAIL_USER, op, PARAMS(P_I64(user_id), P_I64(hk_time_now_ms())));
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    return rc;
}

static int sq_delivery_list(void *impl, int64_t user_id, int limit, int64_t before_id,
                            hk_delivery_t **out, size_t *n)
{
    return list_page(impl, ST_DLV_LIST, "delivery_list", user_id, before_id, limit, &delivery_rows,
                     (void **)out, n);
}

static int sq_delivery_redeliver(void *impl, int64_t user_id, int64_t id, hk_delivery_t *out)
{
    static const char op[] = "delivery_redeliver";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        int64_t row[2] = {0, 0}; /* event_row, meeting_id */
        rc =
            query_one(c, ST_DLV_EVENT, op, read_i64_pair_v, row, PARAMS(P_I64(id), P_I64(user_id)));
        if (rc == 0) {
            hk_webhook_cfg_t wh;
            memset(&wh, 0, sizeof(wh));
            rc = webhook_get_c(c, user_id, &wh, op);
            hk_webhook_cfg_dispose(&wh);
            if (rc == HK_ENOTFOUND)
                rc = HK_ESTATE;
        }
        if (rc == 0)
            rc = delivery_insert_c(c, row[0], user_id, row[1], hk_time_now_ms(), op);
        if (rc == 0)
            rc = query_one(c, ST_DLV_GET, op, read_delivery_v, out,
                           PARAMS(P_I64(sqlite3_last_insert_rowid(c->db))));
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    if (rc != 0)
        hk_delivery_dispose(out);
    return rc;
}

static int sq_webhook_claim(void *impl, int64_t now, int limit, hk_delivery_t **out, size_t *n,
                            int64_t *next_due)
{
    static const char op[] = "webhook_claim";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        if (limit > 0)
            rc = query_all(c, ST_DLV_CLAIM, op, &claim_rows, (void **)out, n,
                           PARAMS(P_I64(now), P_I64(limit)));
        for (size_t i = 0; rc == 0 && i < *n; i++)
            rc = exec_stmt(c, ST_DLV_MARK_SENDING, op, PARAMS(P_I64((*out)[i].id), P_I64(now)));
        if (rc == 0)
            rc = query_one(c, ST_DLV_NEXT_DUE, op, read_i64_v, next_due, PARAMS(P_I64(now)));
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    if (rc != 0) {
        hk_store_free_deliveries(*out, *n);
        *out = NULL;
        *n = 0;
        *next_due = 0;
    }
    return rc;
}

static int sq_webhook_record(void *impl, const hk_delivery_result_t *v, size_t n)
{
    static const char op[] = "webhook_record";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        int64_t now = hk_time_now_ms();
        for (size_t i = 0; rc == 0 && i < n; i++) {
            const hk_delivery_result_t *r = &v[i];
            rc = exec_stmt(c, ST_DLV_RECORD, op,
                           PARAMS(P_I64(r->id), P_TEXT(r->state), P_I64(r->attempts),
                                  P_OPT_I64(r->last_status), P_TEXT(r->last_error),
                                  P_OPT_I64(r->next_attempt_at), P_I64(now)));
            if (rc == 0 && strcmp(r->state, "pending") == 0 && r->next_attempt_at > 0)
                rc = exec_stmt(c, ST_DLV_HOLD_LATER, op,
                               PARAMS(P_I64(r->id), P_I64(r->next_attempt_at)));
        }
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    return rc;
}

static int sq_webhook_reset_sending(void *impl, int64_t *n)
{
    static const char op[] = "webhook_reset_sending";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        rc = exec_stmt(c, ST_DLV_RESET_SENDING, op, PARAMS(P_I64(hk_time_now_ms())));
        if (rc == 0)
            *n = sqlite3_changes(c->db);
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    return rc;
}

static int sq_webhook_prune(void *impl, int64_t before_ms, int64_t *deliveries, int64_t *events)
{
    static const char op[] = "webhook_prune";
    sqlite_store_t *S = impl;
    conn_t *c = acquire(S);
    int rc = tx_begin(c, op);
    if (rc == 0) {
        rc = exec_stmt(c, ST_DLV_PRUNE, op, PARAMS(P_I64(before_ms)));
        if (rc == 0) {
            *deliveries = sqlite3_changes(c->db);
            rc = exec_stmt(c, ST_EVT_PRUNE, op, PARAMS(P_I64(before_ms)));
        }
        if (rc == 0)
            *events = sqlite3_changes(c->db);
        rc = tx_end(c, rc, op);
    }
    release(S, c);
    return rc;
}

static const hk_store_backend_t sqlite_backend = {
    .name = "sqlite",
    .close = sq_close,
    .ping = sq_ping,
    .user_upsert = sq_user_upsert,
    .user_get = sq_user_get,
    .user_get_by_email = sq_user_get_by_email,
    .user_list = sq_user_list,
    .user_update = sq_user_update,
    .token_create = sq_token_create,
    .token_list = sq_token_list,
    .token_delete = sq_token_delete,
    .token_lookup = sq_token_lookup,
    .token_touch = sq_token_touch,
    .meeting_create = sq_meeting_create,
    .meeting_get = sq_meeting_get,
    .meeting_find = sq_meeting_find,
    .meeting_list = sq_meeting_list,
    .meeting_list_active = sq_meeting_list_active,
    .meeting_set_data = sq_meeting_set_data,
    .meeting_set_status = sq_meeting_set_status,
    .meeting_purge = sq_meeting_purge,
    .session_create = sq_session_create,
    .session_end = sq_session_end,
    .segments_put = sq_segments_put,
    .segments_list = sq_segments_list,
    .segments_count = sq_segments_count,
    .analytics = sq_analytics,
    .webhook_put = sq_webhook_put,
    .webhook_get = sq_webhook_get,
    .webhook_delete = sq_webhook_delete,
    .delivery_list = sq_delivery_list,
    .delivery_redeliver = sq_delivery_redeliver,
    .webhook_claim = sq_webhook_claim,
    .webhook_record = sq_webhook_record,
    .webhook_reset_sending = sq_webhook_reset_sending,
    .webhook_prune = sq_webhook_prune,
};

int hk_store_sqlite_open(const char *path, int pool_size, const hk_store_backend_t **be,
                         void **impl, int *version, char *err, size_t errlen)
{
    if (sqlite3_threadsafe() == 0) {
        snprintf(err, errlen, "the linked SQLite library was built without thread support");
        return HK_ESTORE;
    }
    sqlite_store_t *S = calloc(1, sizeof(*S));
    if (S == NULL) {
        snprintf(err, errlen, "out of memory");
        return HK_ESTORE;
    }
    S->conns = calloc((size_t)pool_size, sizeof(conn_t));
    if (S->conns == NULL || pthread_mutex_init(&S->mu, NULL) != 0) {
        free(S->conns);
        free(S);
        snprintf(err, errlen, "out of memory");
        return HK_ESTORE;
    }
    if (pthread_cond_init(&S->cv, NULL) != 0) {
        pthread_mutex_destroy(&S->mu);
        free(S->conns);
        free(S);
        snprintf(err, errlen, "cannot create the pool's condition variable");
        return HK_ESTORE;
    }

    /* The first connection migrates before the others exist, so none of them ever prepares a
     * statement against an older schema. */
    int rc = 0;
    for (int i = 0; rc == 0 && i < pool_size; i++) {
        rc = conn_open(&S->conns[i], path, err, errlen);
        S->nconns = i + 1; /* so sq_close also closes a half-opened connection */
        if (rc == 0 && i == 0)
            rc = hk_store_migrate_sqlite(S->conns[0].db, version, err, errlen);
    }
    if (rc != 0) {
        sq_close(S);
        return HK_ESTORE;
    }
    for (int i = pool_size - 1; i >= 0; i--) {
        S->conns[i].next_free = S->free_list;
        S->free_list = &S->conns[i];
    }
    hk_log_info(MOD, "op=open backend=sqlite path=\"%s\" pool=%d schema_version=%d", path,
                pool_size, *version);
    S->ready = true;
    *be = &sqlite_backend;
    *impl = S;
    return 0;
}
