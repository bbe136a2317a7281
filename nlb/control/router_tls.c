/* The TLS contexts a config asks for (router-int.h): built before an
 * apply changes anything, so that a certificate, key or CA file that does
 * not load fails the start or the reload and leaves the running ones
 * serving; then handed to the groups and listeners. */
#include <errno.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>

#include "nlb/control/router-int.h"
#include "nlb/log.h"

int router_tls_load(const struct nlb_config *cfg, struct router_tls *tls,
                    char *err, size_t err_size)
{
  char why[512];
  size_t n = 0;

  *tls = (struct router_tls){0};
  for (size_t i = 0; i < cfg->n_load_balancers; i++)
    n += cfg->load_balancers[i].n_listeners;
  tls->servers = calloc(n ? n : 1, sizeof(*tls->servers));
  tls->clients = calloc(cfg->n_target_groups ? cfg->n_target_groups : 1,
                        sizeof(*tls->clients));
  tls->n_servers = n;
  tls->n_clients = cfg->n_target_groups;
  if (!tls->servers || !tls->clients) {
    snprintf(err, err_size, "out of memory");
    goto fail_free;
  }
  for (size_t g = 0; g < cfg->n_target_groups; g++) {
    const struct nlb_config_target_group *tg = &cfg->target_groups[g];
    if (!tg->tls.enabled)
      continue;
    tls->clients[g] = nlb_tls_client_context(&tg->tls, why, sizeof(why));
    if (!tls->clients[g]) {
      snprintf(err, err_size, "%s:%d: target group \"%s\": %s", cfg->path,
               tg->tls.line, tg->name, why);
      goto fail_free;
    }
  }
  n = 0;
  for (size_t i = 0; i < cfg->n_load_balancers; i++)
    for (size_t j = 0; j < cfg->load_balancers[i].n_listeners; j++, n++) {
      const struct nlb_config_listener *cl =
          &cfg->load_balancers[i].listeners[j];
      if (!cl->tls.enabled)
        continue;
      tls->servers[n] = nlb_tls_server_create(&cl->tls, why, sizeof(why));
      if (!tls->servers[n]) {
        snprintf(err, err_size, "%s:%d: load balancer \"%s\" port %u: %s",
                 cfg->path, cl->tls.line, cfg->load_balancers[i].name, cl->port,
                 why);
        goto fail_free;
      }
    }
  return 0;

fail_free:
  router_tls_free(tls);
  return -EINVAL;
}

int nlb_router_check_tls(const struct nlb_config *cfg, char *err,
                         size_t err_size)
{
  struct router_tls tls;
  int rc = router_tls_load(cfg, &tls, err, err_size);

  if (rc == 0)
    router_tls_free(&tls);
  return rc;
}

void router_tls_free(struct router_tls *tls)
{
  for (size_t i = 0; tls->servers && i < tls->n_servers; i++)
    nlb_tls_server_release(tls->servers[i]);
  for (size_t i = 0; tls->clients && i < tls->n_clients; i++)
    SSL_CTX_free(tls->clients[i]);
  free(tls->servers);
  free(tls->clients);
  *tls = (struct router_tls){0};
}

void router_tls_give_groups(struct nlb_router *router, struct router_tls *tls)
{
  for (size_t g = 0; g < tls->n_clients && g < router->n_groups; g++) {
    struct nlb_group *group = router->groups[g];
    if (!group->tls_ctx && !tls->clients[g])
      continue;
    /* CA and certificate files are read again on every reload: flows
     * already running keep the context they started with. */
    SSL_CTX_free(group->tls_ctx);
    group->tls_ctx = tls->clients[g];
    tls->clients[g] = NULL;
    router_group_changed(group);
  }
}

void router_tls_set_listener(struct nlb_router *router,
                             struct listener_record *l,
                             struct nlb_tls_server *server)
{
  if (l->tls == server)
    return;
  if (server)
    nlb_tls_server_acquire(server);
  nlb_tls_server_release(l->tls);
  l->tls = server;
  router_listener_changed(router, l);
}

void router_tls_say_listener(const struct listener_record *l)
{
  if (!l->tls)
    return;
  NLB_LOG_EVENT(NLB_LOG_INFO, "tls_listener",
                "listener {lb}:{port} terminates TLS; kTLS {ktls}",
                NLB_LOG_STR("lb", l->lb_name), NLB_LOG_UINT("port", l->port),
                NLB_LOG_STR("ktls", nlb_tls_ktls_available()
                                        ? "available: used for records"
                                        : "not available on this kernel: "
                                          "records through user space"));
}
