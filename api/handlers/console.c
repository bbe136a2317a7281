/* The web console (docs/console.md): its page and files at /ui/, compiled
 * in (console-assets.h), served to anyone without a token. The page holds
 * no data: once loaded, it calls the API with the token its user types, so
 * it can do exactly what that token may. Every answer carries the headers
 * of a page (api_response.page) and a strong ETag; a request whose
 * If-None-Match names it is answered 304. */
#include <stdlib.h>
#include <string.h>

#include "console-assets.h"
#include "handlers.h"

static const struct api_console_asset *find_asset(const char *name)
{
  for (size_t i = 0; i < api_n_console_assets; i++)
    if (strcmp(api_console_assets[i].name, name) == 0)
      return &api_console_assets[i];
  return NULL;
}

/* True when the If-None-Match list ("*", or entity tags separated by
 * commas, weak ones W/"..." included: RFC 9110 13.1.2 compares them
 * weakly) names etag. */
static bool none_match_names(const char *list, const char *etag)
{
  size_t etag_len = strlen(etag);
  const char *p = list;

  for (;;) {
    p += strspn(p, " \t,");
    if (*p == '\0')
      return false;
    if (*p == '*')
      return true;
    if (strncmp(p, "W/", 2) == 0)
      p += 2;
    size_t len = strcspn(p, " \t,");
    if (len == etag_len && memcmp(p, etag, len) == 0)
      return true;
    p += len;
  }
}

static void respond_asset(const struct api_request *req,
                          struct api_response *resp,
                          const struct api_console_asset *asset)
{
  bool unchanged = req->if_none_match != NULL &&
                   none_match_names(req->if_none_match, asset->etag);

  /* Written from where it is, never copied (api_response.static_body). */
  free(resp->body);
  resp->body = NULL;
  resp->static_body = unchanged ? "" : (const char *)asset->data;
  resp->len = unchanged ? 0 : asset->len;
  resp->status = unchanged ? 304 : 200;
  resp->content_type = asset->content_type;
  resp->etag = asset->etag;
  resp->page = true;
}

/* GET /ui/: the page. GET /ui names the same route (a trailing slash is
 * ignored in routing) but not the same place for the browser, which
 * resolves the page's relative links ("app.js") against the URL it
 * shows: it is sent to /ui/. */
void api_handle_console_page(const struct api_request *req,
                             struct api_response *resp)
{
  const struct api_console_asset *page = find_asset("index.html");

  if (!api_no_query(req, resp))
    return;
  if (page == NULL) {
    api_respond_error(resp, 404, "NotFound", "this nlbd has no console");
    return;
  }
  if (req->match->trailing_slash) {
    respond_asset(req, resp, page);
    return;
  }
  free(resp->body);
  resp->body = NULL;
  resp->static_body = "/ui/\n";
  resp->len = strlen(resp->static_body);
  resp->status = 301;
  resp->content_type = "text/plain; charset=utf-8";
  resp->location = "/ui/";
  resp->page = true;
}

/* GET /ui/NAME: one of the page's files. */
void api_handle_console_file(const struct api_request *req,
                             struct api_response *resp)
{
  const struct api_console_asset *asset = find_asset(api_param(req, 0));

  if (!api_no_query(req, resp))
    return;
  if (asset == NULL) {
    api_respond_error(resp, 404, "NotFound", "no such file of the console");
    resp->page = true;
    return;
  }
  respond_asset(req, resp, asset);
}
