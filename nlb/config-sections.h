/* The sections of the config file, each parsed beside the module that owns
 * its settings: config.c names them in one table and calls each with the
 * file's root. Each fills its part of cfg and reports errors through the
 * loader. Private to nlb/; the thread that loads. */
#ifndef NLB_CONFIG_SECTIONS_H
#define NLB_CONFIG_SECTIONS_H

#include "nlb/common/config-loader.h"
#include "nlb/config.h"

/* An address the config places (a target, a listener), for the duplicate
 * check: every address in one array, sorted, each twin reported once. */
struct placed_address {
  const union nlb_sockaddr *address;
  int line;
  size_t order; /* where it was written: ties keep it */
  const char *owner;
};

/* nlb/control/config_registry.c */
void conf_load_registry(struct conf_loader *ld, const config_setting_t *root,
                        struct nlb_config *cfg);
void conf_load_node(struct conf_loader *ld, const config_setting_t *root,
                    struct nlb_config *cfg);

/* nlb/control/config_networks.c */
void conf_load_principals(struct conf_loader *ld, const config_setting_t *root,
                          struct nlb_config *cfg);

/* nlb/dns/config_dns.c. conf_dns_name: text as a DNS name the registry
 * takes, in lower case without a final dot (malloc'd), or NULL. */
char *conf_dns_name(const char *text);
void conf_load_network_dns(struct conf_loader *ld, const config_setting_t *item,
                           const struct nlb_config *cfg,
                           struct nlb_config_network *net);
void conf_load_dns(struct conf_loader *ld, const config_setting_t *root,
                   struct nlb_config *cfg);

/* nlb/control/config_networks.c */
void conf_load_networks(struct conf_loader *ld, const config_setting_t *root,
                        struct nlb_config *cfg);

/* nlb/control/config_targets.c */
void conf_report_duplicates(struct conf_loader *ld, struct placed_address *addr,
                            size_t n, const char *what);
void conf_load_target_groups(struct conf_loader *ld,
                             const config_setting_t *root,
                             struct nlb_config *cfg);

/* nlb/control/config_tls.c: a target group's tls block (re-encryption)
 * and a listener's (termination); the server's defaults are set even
 * where item has no tls block. */
void conf_load_tls_client(struct conf_loader *ld, const config_setting_t *item,
                          struct nlb_tls_client_settings *tls);
void conf_load_tls_server(struct conf_loader *ld, const config_setting_t *item,
                          struct nlb_tls_server_settings *tls);

/* nlb/control/config_listeners.c */
/* A group with preserve_client_ip whose target lies inside a consumer
 * network's range cannot get its answers back: an error at the setting's
 * line (config_targets.c). */
void conf_check_preserve_client_ip(struct conf_loader *ld,
                                   const struct nlb_config *cfg);
void conf_load_load_balancers(struct conf_loader *ld,
                              const config_setting_t *root,
                              struct nlb_config *cfg);
/* item's forwarding ("splice", "sockmap", "auto"), else fallback; an
 * unknown name is an error at its line. */
enum nlb_forwarding conf_get_forwarding(struct conf_loader *ld,
                                        const config_setting_t *item,
                                        enum nlb_forwarding fallback);

#endif
