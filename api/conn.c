/* A client connection's transport: the uv_tcp_t, TLS through memory BIOs,
 * writes and their backpressure, the choice of protocol, and how a
 * connection ends. The protocols (h2.c, h1.c) see plaintext only. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <netinet/in.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conn.h"

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof preface - 1)

struct write_req {
  uv_write_t req;
  struct api_conn *conn;
  char *data;
};

/* ---- lifetime ----------------------------------------------------------- */

static void on_conn_close(uv_handle_t *handle)
{
  struct api_conn *c = handle->data;
  struct api_server *server = c->server;

  nlb_list_remove(&c->link);
  server->n_conns--;
  api_admission_release(c);
  if (c->protocol != NULL)
    c->protocol->free(c);
  if (c->ssl != NULL)
    SSL_free(c->ssl); /* frees both BIOs */
  free(c);
  server->on_conn_closed(server);
}

void api_conn_close(struct api_conn *c)
{
  if (c->closing)
    return;
  c->closing = true;
  uv_close((uv_handle_t *)&c->tcp, on_conn_close);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
  struct api_conn *c = req->data;
  if (status < 0)
    api_conn_close(c);
  /* Otherwise reads go on (dropped) until EOF or the deadline. */
}

/* Ends a finishing connection once its writes are out. */
static void maybe_end(struct api_conn *c)
{
  if (c->closing || !c->finishing || c->writes_pending > 0 || c->shut_down)
    return;
  if (!c->linger) {
    api_conn_close(c);
    return;
  }
  c->shut_down = true;
  c->shutdown_req.data = c;
  if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
    api_conn_close(c);
}

static void tls_drain(struct api_conn *c);

void api_conn_finish(struct api_conn *c, bool linger)
{
  uint64_t deadline = uv_now(c->server->loop) + API_GOAWAY_GRACE_MS;

  if (c->finishing || c->closing)
    return;
  c->finishing = true;
  c->linger = linger;
  /* A peer that takes neither our last bytes nor its FIN is cut. */
  if (c->close_deadline == 0 || deadline < c->close_deadline)
    c->close_deadline = deadline;
  if (!linger)
    uv_read_stop((uv_stream_t *)&c->tcp);
  else if (c->ssl != NULL && c->handshake_done) {
    SSL_shutdown(c->ssl); /* close_notify; we do not wait for theirs */
    ERR_clear_error();
    tls_drain(c);
  }
  maybe_end(c);
}

/* ---- writing ------------------------------------------------------------ */

static void conn_flush(struct api_conn *c)
{
  if (c->closing)
    return;
  if (!c->finishing && c->protocol != NULL)
    c->protocol->flush(c);
  maybe_end(c);
}

static void on_write(uv_write_t *req, int status)
{
  struct write_req *w = NLB_CONTAINER_OF(req, struct write_req, req);
  struct api_conn *c = w->conn;

  free(w->data);
  free(w);
  c->writes_pending--;
  if (c->closing)
    return;
  if (status < 0) {
    api_conn_log(c, 0, "write failed: %s", uv_strerror(status));
    api_conn_close(c);
    return;
  }
  conn_flush(c);
}

/* Writes data (malloc'd; taken) to the socket. */
static void write_raw(struct api_conn *c, char *data, size_t len)
{
  struct write_req *w = malloc(sizeof *w);
  if (w == NULL) {
    free(data);
    api_conn_close(c);
    return;
  }
  w->conn = c;
  w->data = data;
  uv_buf_t buf = uv_buf_init(data, (unsigned)len);
  int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
  if (r != 0) {
    free(data);
    free(w);
    api_conn_close(c);
    return;
  }
  c->writes_pending++;
}

/* Sends what OpenSSL has queued in the write BIO. */
static void tls_drain(struct api_conn *c)
{
  size_t pending = BIO_ctrl_pending(c->wbio);
  if (pending == 0 || c->closing)
    return;
  char *data = malloc(pending);
  if (data == NULL) {
    api_conn_close(c);
    return;
  }
  int n = BIO_read(c->wbio, data, (int)pending);
  if (n <= 0) {
    free(data);
    return;
  }
  write_raw(c, data, (size_t)n);
}

void api_conn_write(struct api_conn *c, char *data, size_t len)
{
  if (c->closing || len == 0) {
    free(data);
    return;
  }
  if (c->ssl == NULL) {
    write_raw(c, data, len);
    return;
  }
  /* A memory BIO never blocks, so SSL_write takes everything. */
  int n = SSL_write(c->ssl, data, (int)len);
  free(data);
  if (n <= 0) {
    ERR_clear_error();
    api_conn_close(c);
    return;
  }
  tls_drain(c);
}

size_t api_conn_queued(const struct api_conn *c)
{
  return c->tcp.write_queue_size;
}

static void on_flush_timer(uv_timer_t *timer)
{
  struct api_server *server = timer->data;
  struct nlb_list *pos, *tmp;
  NLB_LIST_FOREACH_SAFE(pos, tmp, &server->conns)
  {
    struct api_conn *c = NLB_CONTAINER_OF(pos, struct api_conn, link);
    if (c->flush_wanted) {
      c->flush_wanted = false;
      conn_flush(c);
    }
  }
}

void api_conn_wake(struct api_conn *c)
{
  c->flush_wanted = true;
  uv_timer_start(&c->server->flush_timer, on_flush_timer, 0, 0);
}

/* ---- reading ------------------------------------------------------------ */

static int use_protocol(struct api_conn *c, const struct api_protocol *p)
{
  c->protocol = p;
  if (p->start(c) != 0) {
    p->free(c);
    c->protocol = NULL;
    api_conn_close(c);
    return -ENOMEM;
  }
  return 0;
}

static void deliver(struct api_conn *c, const char *data, size_t len)
{
  if (!c->finishing && !c->closing && len > 0)
    c->protocol->recv(c, data, len);
}

/* Plain connections: HTTP/2 if and only if they open with the preface. */
static void recv_plain(struct api_conn *c, const char *data, size_t len)
{
  if (c->protocol == NULL) {
    size_t n = PREFACE_LEN - c->n_sniffed;
    n = len < n ? len : n;
    bool h2 = memcmp(data, preface + c->n_sniffed, n) == 0;
    if (h2 && c->n_sniffed + n < PREFACE_LEN) {
      memcpy(c->sniffed + c->n_sniffed, data, n);
      c->n_sniffed += n;
      return;
    }
    if (use_protocol(c, h2 ? c->server->h2_protocol : c->server->h1_protocol) !=
        0)
      return;
    deliver(c, c->sniffed, c->n_sniffed);
  }
  deliver(c, data, len);
}

static const struct api_protocol *alpn_protocol(struct api_conn *c)
{
  const unsigned char *alpn = NULL;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
  if (alpn_len == 2 && memcmp(alpn, "h2", 2) == 0)
    return c->server->h2_protocol;
  return c->server->h1_protocol;
}

/* 1 once the handshake is done (and the protocol chosen), 0 while it goes
 * on, -1 when it failed (the connection is finishing). */
static int tls_handshake(struct api_conn *c)
{
  int r = SSL_do_handshake(c->ssl);
  tls_drain(c);
  if (r != 1) {
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
      return 0;
    unsigned long err = ERR_get_error();
    api_conn_log(c, 0, "TLS handshake failed: %s",
                 err != 0 ? ERR_reason_error_string(err) : "closed");
    ERR_clear_error();
    api_conn_finish(c, false);
    return -1;
  }
  c->handshake_done = true;
  return use_protocol(c, alpn_protocol(c)) == 0 ? 1 : -1;
}

static void recv_tls(struct api_conn *c, const char *data, size_t len)
{
  static char plain[16 * 1024];

  BIO_write(c->rbio, data, (int)len);
  if (!c->handshake_done && tls_handshake(c) <= 0)
    return;
  while (!c->finishing && !c->closing) {
    int n = SSL_read(c->ssl, plain, sizeof plain);
    if (n <= 0) {
      int e = SSL_get_error(c->ssl, n);
      if (e != SSL_ERROR_WANT_READ) {
        if (e != SSL_ERROR_ZERO_RETURN)
          api_conn_log(c, 0, "TLS error");
        api_conn_finish(c, false);
      }
      ERR_clear_error();
      break;
    }
    deliver(c, plain, (size_t)n);
  }
  tls_drain(c);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
  struct api_conn *c = handle->data;
  *buf = uv_buf_init(c->server->read_buf, sizeof c->server->read_buf);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
  struct api_conn *c = stream->data;

  if (nread == 0 || c->closing)
    return;
  if (nread < 0) {
    /* The peer is gone or done sending: what is queued may still go. */
    if (nread == UV_EOF && c->writes_pending > 0) {
      c->linger = false; /* nothing left to drain */
      api_conn_finish(c, false);
      uv_read_stop(stream);
    } else {
      api_conn_close(c);
    }
    return;
  }
  if (c->finishing)
    return; /* lingering: dropped */
  if (c->ssl != NULL)
    recv_tls(c, buf->base, (size_t)nread);
  else
    recv_plain(c, buf->base, (size_t)nread);
  c->flush_wanted = false;
  conn_flush(c);
}

void api_conn_reading(struct api_conn *c, bool on)
{
  if (c->closing || c->finishing)
    return;
  if (on)
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  else
    uv_read_stop((uv_stream_t *)&c->tcp);
}

/* ---- accepting ---------------------------------------------------------- */

static int tls_start(struct api_conn *c)
{
  c->ssl = SSL_new(c->server->ssl_ctx);
  c->rbio = BIO_new(BIO_s_mem());
  c->wbio = BIO_new(BIO_s_mem());
  if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL) {
    BIO_free(c->rbio);
    BIO_free(c->wbio);
    return -ENOMEM;
  }
  SSL_set_bio(c->ssl, c->rbio, c->wbio);
  SSL_set_accept_state(c->ssl);
  return 0;
}

static void format_peer(struct api_conn *c)
{
  struct sockaddr_storage ss = {0};
  int len = sizeof ss;
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) == 0) {
    c->peer_addr = ss;
    if (ss.ss_family == AF_INET) {
      struct sockaddr_in *in = (struct sockaddr_in *)&ss;
      uv_ip4_name(in, host, sizeof host);
      port = ntohs(in->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
      uv_ip6_name(in6, host, sizeof host);
      port = ntohs(in6->sin6_port);
    }
  }
  snprintf(c->peer, sizeof c->peer, "%s:%d", host, port);
}

void api_conn_on_connection(uv_stream_t *listener, int status)
{
  struct api_server *server = listener->data;
  struct api_conn *c, *evicted;
  enum api_admission_verdict verdict;

  if (status < 0) {
    api_log(server, 2, "api: accept failed: %s", uv_strerror(status));
    return;
  }
  c = calloc(1, sizeof *c);
  if (c == NULL)
    return;
  c->server = server;
  c->accepted_at = uv_now(server->loop);
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  nlb_list_append(&server->conns, &c->link);
  server->n_conns++;
  if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
    api_conn_close(c);
    return;
  }
  format_peer(c);
  verdict = api_admission_accept(server, c, &evicted);
  if (evicted != NULL)
    api_conn_close(evicted);
  if (verdict != API_ADMIT_KEEP) {
    api_conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  if ((server->ssl_ctx != NULL && tls_start(c) != 0) ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    api_conn_close(c);
}

/* ---- timeouts and going away -------------------------------------------- */

void api_conn_sweep(struct api_conn *c, uint64_t now)
{
  struct api_server *server = c->server;

  if (c->close_deadline != 0 && now >= c->close_deadline) {
    api_conn_close(c);
    return;
  }
  switch (api_admission_sweep(c, now)) {
  case API_ADMIT_CLOSE:
    api_conn_close(c);
    return;
  case API_ADMIT_GOAWAY:
    api_conn_goaway(c, now + API_GOAWAY_GRACE_MS);
    if (c->closing)
      return;
    break;
  case API_ADMIT_KEEP:
    break;
  }
  if (c->finishing)
    return;
  if (c->protocol == NULL) {
    /* A TLS handshake is part of the first request; bytes that may still
     * become a preface are an idle connection's. */
    uint64_t limit =
        c->ssl != NULL ? server->request_timeout_ms : server->idle_timeout_ms;
    if (now - c->accepted_at >= limit)
      api_conn_close(c);
    return;
  }
  c->protocol->sweep(c, now);
  conn_flush(c);
}

void api_conn_goaway(struct api_conn *c, uint64_t deadline)
{
  if (c->closing)
    return;
  if (deadline != 0 && (c->close_deadline == 0 || deadline < c->close_deadline))
    c->close_deadline = deadline;
  /* Nothing to finish: no protocol yet, or only draining after our FIN. */
  if (c->protocol == NULL || c->shut_down) {
    api_conn_close(c);
    return;
  }
  if (!c->finishing)
    c->protocol->goaway(c);
  conn_flush(c);
}
