/* Error codes, small helpers and attributes shared by every hark module. */
#ifndef HK_COMMON_H
#define HK_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/*
 * Error convention (libuv's): functions return 0 on success and a negative code on failure.
 * System errors are libuv's UV_E* codes (negated errno); hark's own codes live below -20000 so
 * they never collide with them. hk_strerror() names either kind.
 */
enum {
    HK_EINVAL = -20001,    /* invalid argument or input */
    HK_ENOTFOUND = -20002, /* no such object (or not visible to the caller) */
    HK_ECONFLICT = -20003, /* state conflict (duplicate, wrong state) */
    HK_ETOOBIG = -20004,   /* a cap was exceeded */
    HK_ESTORE = -20005,    /* storage backend failure */
    HK_EAUTH = -20006,     /* authentication failed */
    HK_ENOMEM = -20007,    /* allocation failed */
    HK_ELIMIT = -20008,    /* a quota was reached */
    HK_ESTATE = -20009,    /* operation not allowed in the current state */
};

/* Returns a static, human-readable name for a hark or libuv error code. */
const char *hk_strerror(int err);

#define HK_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define HK_UNUSED(x) ((void)(x))
/* A macro's value as a string literal: HK_STR(MAX) -> "256". */
#define HK_STR_(x) #x
#define HK_STR(x) HK_STR_(x)
#define HK_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

#endif
