/* hk_strerror(): names for hark's error codes, falling back to libuv's. */
#include "core/common.h"

#include <uv.h>

const char *hk_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
    case HK_EINVAL:
        return "invalid input";
    case HK_ENOTFOUND:
        return "not found";
    case HK_ECONFLICT:
        return "conflict";
    case HK_ETOOBIG:
        return "too large";
    case HK_ESTORE:
        return "storage failure";
    case HK_EAUTH:
        return "authentication failed";
    case HK_ENOMEM:
        return "out of memory";
    case HK_ELIMIT:
        return "limit reached";
    case HK_ESTATE:
        return "not allowed in the current state";
    default:
        return uv_strerror(err);
    }
}
