/* Versioned SQLite schema migrations compiled into the binary; private to src/store/. */
#ifndef HK_STORE_MIGRATIONS_H
#define HK_STORE_MIGRATIONS_H

#include <sqlite3.h>
#include "core/common.h"

/* The newest schema version this binary knows (the number of migrations). */
int hk_store_migrations_latest(void);

/*
 * Brings the database on `db` to the latest version: reads `PRAGMA user_version` and applies every
 * newer migration, all in one BEGIN IMMEDIATE transaction (so concurrent openers serialise and a
 * failure leaves the previous version intact). Returns 0 and *version, or HK_ESTORE with the reason
 * in err[errlen] (also when the database is newer than this binary). Call on a connection nobody
 * else uses yet, before any statement is prepared on it.
 */
int hk_store_migrate_sqlite(sqlite3 *db, int *version, char *err, size_t errlen);

#endif
