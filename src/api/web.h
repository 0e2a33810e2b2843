/* The dashboard's static files, embedded at build time by scripts/embed-web (build/gen/). */
#ifndef HK_WEB_H
#define HK_WEB_H

#include <stddef.h>

typedef struct {
    const char *name;         /* file name under web/ ("app.js") */
    const char *content_type; /* "text/javascript; charset=utf-8" */
    const unsigned char *data;
    size_t len;
    const char *etag; /* quoted content hash: "\"1f2e…\"" */
} hk_web_asset_t;

/* Every file of web/, sorted by name. index.html already names its assets under
 * /assets/<hk_web_build_hash>/. Immutable, any thread. */
extern const hk_web_asset_t hk_web_assets[];
extern const size_t hk_web_nassets;
/* Hash of all the files together: the versioned asset path, which changes whenever any file does.
 */
extern const char hk_web_build_hash[];

#endif
