/* nlbctl's HTTP: libcurl, a fresh handle and connection per request.
 *
 * A connection is never reused: Debian 12's libcurl 7.88 gets no answer to
 * a second request on a reused h2c prior-knowledge connection, and a
 * command sends a handful of requests at most. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "cli.h"
#include "build-config.h"

#define CONNECT_TIMEOUT_MS 10000L
/* How long curl_multi_poll waits at most, so idle cut-offs are checked. */
#define POLL_MS 50

struct buffer {
  char *data;
  size_t len;
  bool failed;
};

static bool buffer_add(struct buffer *b, const char *data, size_t n)
{
  char *grown = realloc(b->data, b->len + n + 1);
  if (grown == NULL) {
    b->failed = true;
    return false;
  }
  memcpy(grown + b->len, data, n);
  b->data = grown;
  b->len += n;
  b->data[b->len] = '\0';
  return true;
}

static long now_ms(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cli_http_init(void)
{
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fputs("nlbctl: cannot initialize libcurl\n", stderr);
    return CLI_EXIT_ERROR;
  }
  return CLI_EXIT_OK;
}

void cli_http_cleanup(void)
{
  curl_global_cleanup();
}

char *cli_escape(const char *text)
{
  static const char hex[] = "0123456789ABCDEF";
  char *out = malloc(strlen(text) * 3 + 1), *o = out;
  if (out == NULL)
    return NULL;
  for (const unsigned char *c = (const unsigned char *)text; *c != '\0'; c++) {
    if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') ||
        (*c >= '0' && *c <= '9') || *c == '-' || *c == '.' || *c == '_' ||
        *c == '~') {
      *o++ = (char)*c;
    } else {
      *o++ = '%';
      *o++ = hex[*c >> 4];
      *o++ = hex[*c & 15];
    }
  }
  *o = '\0';
  return out;
}

/* The list holds the token: wipe it before it goes back to the heap. */
static void headers_free(struct curl_slist *headers)
{
  for (struct curl_slist *h = headers; h != NULL; h = h->next)
    explicit_bzero(h->data, strlen(h->data));
  curl_slist_free_all(headers);
}

static struct curl_slist *headers_new(const struct cli_settings *settings,
                                      bool has_body)
{
  struct curl_slist *headers = NULL, *next;

  next = curl_slist_append(headers, "Accept: application/json");
  if (next != NULL && has_body)
    next = curl_slist_append(headers = next, "Content-Type: application/json");
  if (next != NULL && settings->token != NULL) {
    static const char prefix[] = "Authorization: Bearer ";
    size_t n = sizeof prefix + strlen(settings->token);
    char *line = malloc(n);
    if (line == NULL) {
      headers_free(next);
      return NULL;
    }
    snprintf(line, n, "%s%s", prefix, settings->token);
    next = curl_slist_append(headers = next, line);
    explicit_bzero(line, n);
    free(line);
  }
  if (next == NULL)
    headers_free(headers);
  return next;
}

/* A handle for url with everything but the method and the body set. */
static CURL *handle_new(const struct cli_settings *settings, const char *url,
                        struct curl_slist *headers, char *error)
{
  CURL *h = curl_easy_init();
  if (h == NULL)
    return NULL;
  bool tls = strncmp(url, "https://", 8) == 0;
  curl_easy_setopt(h, CURLOPT_URL, url);
  /* h2c needs prior knowledge (there is no Upgrade); over TLS, ALPN
   * chooses among h2 and http/1.1. */
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION,
                   tls ? (long)CURL_HTTP_VERSION_2TLS
                       : (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
  curl_easy_setopt(h, CURLOPT_FORBID_REUSE, 1L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "nlbctl/" PACKAGE_VERSION);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  /* Redirects are not followed: the token would go wherever they lead. */
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(h, CURLOPT_PROTOCOLS, CURLPROTO_HTTP | CURLPROTO_HTTPS);
#endif
  if (settings->cacert != NULL)
    curl_easy_setopt(h, CURLOPT_CAINFO, settings->cacert);
  if (settings->insecure) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  error[0] = '\0';
  return h;
}

static int transport_error(const struct cli_settings *settings,
                           const char *method, const char *url, CURLcode code,
                           const char *error)
{
  const char *why = error[0] != '\0' ? error : curl_easy_strerror(code);
  switch (code) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_CONNECT:
    fprintf(stderr,
            "nlbctl: cannot reach the API at %s: %s\n"
            "(is nlbd running with an api section? --api, NLB_API or the "
            "config file set the address)\n",
            settings->api, why);
    break;
  case CURLE_OPERATION_TIMEDOUT:
    fprintf(stderr, "nlbctl: %s %s: no answer in time: %s\n", method, url, why);
    break;
  default:
    fprintf(stderr, "nlbctl: %s %s: %s\n", method, url, why);
  }
  return CLI_EXIT_ERROR;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
  return buffer_add(arg, data, size * n) ? size * n : 0;
}

static void verbose_answer(const struct cli_settings *settings, CURL *h,
                           long started)
{
  long status = 0, version = 0;
  if (!settings->verbose)
    return;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(h, CURLINFO_HTTP_VERSION, &version);
  fprintf(stderr, "< %ld (%s, %ld ms)\n", status,
          version == CURL_HTTP_VERSION_2_0 ? "HTTP/2" : "HTTP/1.1",
          now_ms() - started);
}

int cli_http_request(const struct cli_settings *settings, const char *method,
                     const char *path, const char *body,
                     struct cli_response *response)
{
  char error[CURL_ERROR_SIZE];
  struct buffer answer = {0};
  int r = CLI_EXIT_ERROR;

  memset(response, 0, sizeof *response);
  char *url = malloc(strlen(settings->api) + strlen(path) + 1);
  struct curl_slist *headers = headers_new(settings, body != NULL);
  CURL *h = url != NULL && headers != NULL
                ? handle_new(settings, strcat(strcpy(url, settings->api), path),
                             headers, error)
                : NULL;
  if (h == NULL) {
    fputs("nlbctl: out of memory\n", stderr);
    goto out;
  }
  if (strcmp(method, "GET") != 0)
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  if (body != NULL) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
  }
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer);
  if (settings->timeout_ms > 0)
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, settings->timeout_ms);
  if (settings->verbose)
    fprintf(stderr, "> %s %s\n", method, url);
  long started = now_ms();
  CURLcode code = curl_easy_perform(h);
  if (code != CURLE_OK && answer.failed) {
    fputs("nlbctl: out of memory\n", stderr);
    goto out;
  }
  if (code != CURLE_OK) {
    r = transport_error(settings, method, url, code, error);
    goto out;
  }
  verbose_answer(settings, h, started);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response->status);
  response->body = answer.data != NULL ? answer.data : strdup("");
  response->len = answer.len;
  answer.data = NULL;
  r = response->body != NULL ? 0 : CLI_EXIT_ERROR;
out:
  free(answer.data);
  if (h != NULL)
    curl_easy_cleanup(h);
  headers_free(headers);
  free(url);
  return r;
}

void cli_response_free(struct cli_response *response)
{
  free(response->body);
  memset(response, 0, sizeof *response);
}

/* ---- streams ------------------------------------------------------------ */

struct stream {
  CURL *handle;
  int (*on_line)(const char *line, void *arg);
  void *arg;
  long status;           /* 0 until the answer's head arrived */
  long last_data_ms;     /* when bytes last arrived (or the head) */
  bool stopped;          /* on_line asked to stop */
  struct buffer pending; /* a line not yet complete, or an error body */
};

/* Hands each complete line of the pending buffer to on_line. */
static bool stream_lines(struct stream *s)
{
  char *start = s->pending.data, *nl;
  size_t left = s->pending.len;

  while (left > 0 && (nl = memchr(start, '\n', left)) != NULL) {
    *nl = '\0';
    if (s->on_line(start, s->arg) != 0) {
      s->stopped = true;
      return false;
    }
    left -= (size_t)(nl + 1 - start);
    start = nl + 1;
  }
  memmove(s->pending.data, start, left);
  s->pending.len = left;
  s->pending.data[left] = '\0';
  return true;
}

static size_t on_stream_data(char *data, size_t size, size_t n, void *arg)
{
  struct stream *s = arg;
  if (s->status == 0)
    curl_easy_getinfo(s->handle, CURLINFO_RESPONSE_CODE, &s->status);
  s->last_data_ms = now_ms();
  if (!buffer_add(&s->pending, data, size * n))
    return 0;
  /* An error answer is kept whole, for cli_print_api_error. */
  if (s->status >= 200 && s->status < 300 && !stream_lines(s))
    return 0;
  return size * n;
}

/* Runs the transfer until it ends, idle_ms pass without data, or the
 * answer's head takes longer than timeout_ms. Returns the curl result;
 * *idle tells the idle end apart. */
static CURLcode stream_run(struct stream *s, long idle_ms, long timeout_ms,
                           bool *idle)
{
  CURLM *multi = curl_multi_init();
  CURLcode result = CURLE_OUT_OF_MEMORY;
  int running = 1;
  long started = now_ms();

  *idle = false;
  if (multi == NULL || curl_multi_add_handle(multi, s->handle) != CURLM_OK)
    goto out;
  result = CURLE_OK;
  while (running) {
    if (curl_multi_perform(multi, &running) != CURLM_OK) {
      result = CURLE_RECV_ERROR;
      break;
    }
    if (!running)
      break;
    if (s->status == 0)
      curl_easy_getinfo(s->handle, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->status != 0 && s->last_data_ms == 0)
      s->last_data_ms = now_ms();
    long now = now_ms();
    if (idle_ms > 0 && s->status != 0 && now - s->last_data_ms >= idle_ms) {
      *idle = true;
      break;
    }
    if (s->status == 0 && timeout_ms > 0 && now - started >= timeout_ms) {
      result = CURLE_OPERATION_TIMEDOUT;
      break;
    }
    curl_multi_poll(multi, NULL, 0, POLL_MS, NULL);
  }
  if (running == 0) {
    int left;
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(multi, &left)) != NULL)
      if (msg->msg == CURLMSG_DONE)
        result = msg->data.result;
  }
  curl_multi_remove_handle(multi, s->handle);
out:
  if (multi != NULL)
    curl_multi_cleanup(multi);
  return result;
}

int cli_http_stream(const struct cli_settings *settings, const char *path,
                    long idle_ms, int (*on_line)(const char *line, void *arg),
                    void *arg, struct cli_response *response)
{
  char error[CURL_ERROR_SIZE];
  struct stream s = {.on_line = on_line, .arg = arg};
  int r = CLI_EXIT_ERROR;
  bool idle;

  memset(response, 0, sizeof *response);
  char *url = malloc(strlen(settings->api) + strlen(path) + 1);
  struct curl_slist *headers = headers_new(settings, false);
  s.handle =
      url != NULL && headers != NULL
          ? handle_new(settings, strcat(strcpy(url, settings->api), path),
                       headers, error)
          : NULL;
  if (s.handle == NULL) {
    fputs("nlbctl: out of memory\n", stderr);
    goto out;
  }
  curl_easy_setopt(s.handle, CURLOPT_WRITEFUNCTION, on_stream_data);
  curl_easy_setopt(s.handle, CURLOPT_WRITEDATA, &s);
  if (settings->verbose)
    fprintf(stderr, "> GET %s\n", url);
  long started = now_ms();
  CURLcode code = stream_run(&s, idle_ms, settings->timeout_ms, &idle);
  if (s.pending.failed) {
    fputs("nlbctl: out of memory\n", stderr);
    goto out;
  }
  if (code != CURLE_OK && !(code == CURLE_WRITE_ERROR && s.stopped)) {
    r = transport_error(settings, "GET", url, code, error);
    goto out;
  }
  verbose_answer(settings, s.handle, started);
  if (s.status == 0)
    curl_easy_getinfo(s.handle, CURLINFO_RESPONSE_CODE, &s.status);
  response->status = s.status;
  if (s.status < 200 || s.status >= 300) {
    response->body = s.pending.data != NULL ? s.pending.data : strdup("");
    response->len = s.pending.len;
    s.pending.data = NULL;
  } else if (!s.stopped && s.pending.len > 0) {
    /* A last line without its newline, when the stream ended. */
    on_line(s.pending.data, arg);
  }
  r = 0;
out:
  free(s.pending.data);
  if (s.handle != NULL)
    curl_easy_cleanup(s.handle);
  headers_free(headers);
  free(url);
  return r;
}
