/* Private to api/: the web console's files (api/ui/), compiled in.
 * api/local.mk generates api/console-assets.c from the files of the source
 * tree with api/ui/gen-assets.sh, so nlbd serves at /ui/ exactly the page
 * its code was built with: nothing is read from disk at run time, and no
 * file but these can be served. Constant data: any thread. */
#ifndef NLB_API_CONSOLE_ASSETS_H
#define NLB_API_CONSOLE_ASSETS_H

#include <stddef.h>

struct api_console_asset {
  const char *name;          /* "app.js": its path under /ui/ */
  const unsigned char *data; /* its bytes (not NUL-terminated) */
  size_t len;
  const char *content_type;
  const char *etag; /* "\"<the first 32 hex digits of its SHA-256>\"" */
};

/* Every file of the console, once. */
extern const struct api_console_asset api_console_assets[];
extern const size_t api_n_console_assets;

#endif
