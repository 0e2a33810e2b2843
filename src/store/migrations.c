/* SQLite schema migrations: each version is a NULL-terminated list of statements, never edited. */
#include "store/migrations.h"

#include <stdio.h>
#include "core/log.h"

/*
 * Rules for adding a version: append a new array and list it in `migrations`; never change a
 * shipped one (databases in the field already ran it). Statements run inside one transaction, so
 * they must not be ones SQLite refuses there (VACUUM, PRAGMA foreign_keys, PRAGMA journal_mode).
 * `end` and `start` are quoted because END is a keyword in both SQLite and PostgreSQL.
 */
static const char *const v1[] = {
    "CREATE TABLE users ("
    " id INTEGER PRIMARY KEY,"
    " email TEXT NOT NULL UNIQUE COLLATE NOCASE,"
    " name TEXT,"
    " max_concurrent_bots INTEGER NOT NULL,"
    " data TEXT NOT NULL DEFAULT '{}',"
    " created_at INTEGER NOT NULL)",

    "CREATE TABLE api_tokens ("
    " id INTEGER PRIMARY KEY,"
    " user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " token_hash TEXT NOT NULL UNIQUE,"
    " created_at INTEGER NOT NULL,"
    " last_used_at INTEGER)",
    "CREATE INDEX api_tokens_user ON api_tokens(user_id)",

    "CREATE TABLE meetings ("
    " id INTEGER PRIMARY KEY,"
    " user_id INTEGER NOT NULL REFERENCES users(id),"
    " platform TEXT NOT NULL,"
    " native_meeting_id TEXT NOT NULL,"
    " status TEXT NOT NULL,"
    " start_time INTEGER,"
    " end_time INTEGER,"
    " data TEXT NOT NULL DEFAULT '{}',"
    " config TEXT NOT NULL DEFAULT '{}',"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL)",
    "CREATE INDEX meetings_user_id ON meetings(user_id, id DESC)",
    "CREATE INDEX meetings_user_native ON meetings(user_id, platform, native_meeting_id, id DESC)",
    /* At most one live meeting per native meeting and user. The partial indexes' WHERE clause
     * must stay textually identical to ACTIVE_WHERE in sqlite.c so the planner can use them. */
    "CREATE UNIQUE INDEX meetings_one_active ON meetings(user_id, platform, native_meeting_id)"
    " WHERE status NOT IN ('completed','failed')",
    /* Active lookups: a plain index on status cannot serve "status NOT IN (...)", so index the
     * live rows only; the all-users active scan then reads just those, already in id order. */
    "CREATE INDEX meetings_active ON meetings(id) WHERE status NOT IN ('completed','failed')",

    "CREATE TABLE meeting_sessions ("
    " id INTEGER PRIMARY KEY,"
    " meeting_id INTEGER NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,"
    " uid TEXT,"
    " started_at INTEGER NOT NULL,"
    " ended_at INTEGER)",
    "CREATE INDEX meeting_sessions_meeting ON meeting_sessions(meeting_id)",

    "CREATE TABLE segments ("
    " segment_id TEXT PRIMARY KEY,"
    " meeting_id INTEGER NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,"
    " session_id INTEGER,"
    " \"start\" REAL NOT NULL,"
    " \"end\" REAL NOT NULL,"
    " text TEXT NOT NULL,"
    " speaker TEXT,"
    " language TEXT,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL)",
    "CREATE INDEX segments_meeting_start ON segments(meeting_id, \"start\")",
    NULL,
};

/*
 * v2: webhooks. One endpoint per user; an outbox of events written in the same transaction as the
 * meeting change that causes them; one delivery row per (event, endpoint) with its retry state.
 * `events` is a JSON array of subscribed types, NULL for all. Delivery states: pending (waiting
 * for its next attempt), sending (claimed by the running server; reset to pending at start),
 * delivered, failed. See docs/internals/webhooks.md.
 */
static const char *const v2[] = {
    "CREATE TABLE webhooks ("
    " user_id INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,"
    " url TEXT NOT NULL,"
    " secret TEXT,"
    " events TEXT,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL)",

    "CREATE TABLE webhook_events ("
    " id INTEGER PRIMARY KEY,"
    " event_id TEXT NOT NULL UNIQUE,"
    " user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " meeting_id INTEGER,"
    " event_type TEXT NOT NULL,"
    " payload TEXT NOT NULL,"
    " created_at INTEGER NOT NULL)",
    "CREATE INDEX webhook_events_meeting ON webhook_events(meeting_id)",

    "CREATE TABLE webhook_deliveries ("
    " id INTEGER PRIMARY KEY,"
    " event_row INTEGER NOT NULL REFERENCES webhook_events(id) ON DELETE CASCADE,"
    " user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,"
    " meeting_id INTEGER,"
    " state TEXT NOT NULL,"
    " attempts INTEGER NOT NULL DEFAULT 0,"
    " last_status INTEGER,"
    " last_error TEXT,"
    " next_attempt_at INTEGER,"
    " delivered_at INTEGER,"
    " created_at INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL)",
    "CREATE INDEX webhook_deliveries_user ON webhook_deliveries(user_id, id DESC)",
    /* The due scan reads only pending rows in due order; the WHERE must match sqlite.c's text. */
    "CREATE INDEX webhook_deliveries_due ON webhook_deliveries(next_attempt_at, id)"
    " WHERE state = 'pending'",
    /* Per-meeting order: "is an earlier delivery of this meeting still open?" */
    "CREATE INDEX webhook_deliveries_open ON webhook_deliveries(user_id, meeting_id, id)"
    " WHERE state IN ('pending','sending')",
    NULL,
};

/* migrations[i] brings the schema from version i to version i + 1. */
static const char *const *const migrations[] = {v1, v2};

int hk_store_migrations_latest(void)
{
    return (int)HK_ARRAY_SIZE(migrations);
}

/* Runs one statement that returns no rows we need; logs and fills err on failure. */
static int exec(sqlite3 *db, const char *sql, const char *what, char *err, size_t errlen)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc == SQLITE_OK)
        return 0;
    char q[512];
    hk_log_error("store", "op=migrate step=%s rc=%d err=%s", what, rc,
                 hk_log_quote(q, sizeof(q), msg ? msg : sqlite3_errmsg(db)));
    snprintf(err, errlen, "migration %s failed: %s", what, msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return HK_ESTORE;
}

static int read_user_version(sqlite3 *db, int *version, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *version = sqlite3_column_int(st, 0);
            rc = SQLITE_OK;
        }
    }
    if (rc != SQLITE_OK) {
        char q[512];
        hk_log_error("store", "op=migrate step=read_version rc=%d err=%s", rc,
                     hk_log_quote(q, sizeof(q), sqlite3_errmsg(db)));
        snprintf(err, errlen, "reading schema version failed: %s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return rc == SQLITE_OK ? 0 : HK_ESTORE;
}

int hk_store_migrate_sqlite(sqlite3 *db, int *version, char *err, size_t errlen)
{
    const int latest = hk_store_migrations_latest();
    int current = 0;

    /* IMMEDIATE takes the write lock before reading the version, so two processes opening a new
     * database at once cannot both decide to run v1. */
    int rc = exec(db, "BEGIN IMMEDIATE", "begin", err, errlen);
    if (rc != 0)
        return rc;
    rc = read_user_version(db, &current, err, errlen);
    if (rc == 0 && current > latest) {
        hk_log_error("store", "op=migrate db_version=%d known_version=%d err=\"database is newer\"",
                     current, latest);
        snprintf(err, errlen,
                 "database schema version %d is newer than this hark supports (%d): "
                 "upgrade hark or use another data directory",
                 current, latest);
        rc = HK_ESTORE;
    }
    for (int v = current; rc == 0 && v < latest; v++) {
        char what[32];
        snprintf(what, sizeof(what), "v%d", v + 1);
        for (const char *const *sql = migrations[v]; rc == 0 && *sql; sql++)
            rc = exec(db, *sql, what, err, errlen);
        if (rc == 0) {
            /* PRAGMA takes no bound parameters; the value is our own integer. */
            char set[48];
            snprintf(set, sizeof(set), "PRAGMA user_version = %d", v + 1);
            rc = exec(db, set, what, err, errlen);
        }
        if (rc == 0)
            hk_log_info("store", "op=migrate applied=%d", v + 1);
    }
    if (rc == 0)
        rc = exec(db, "COMMIT", "commit", err, errlen);
    if (rc != 0) {
        /* A failed statement may already have ended the transaction; only roll back if open. */
        if (!sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    *version = latest;
    return 0;
}
