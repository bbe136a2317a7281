/* The config's `tls` blocks: a TLS listener's (termination) and a target
 * group's (re-encryption). Paths only: the files are read when the config
 * is applied (nlb/common/tls_server.h, tls_client.h). */
#include "nlb/config.h"

#include <libconfig.h>
#include <stdlib.h>
#include <string.h>

#include "nlb/config-sections.h"

/* `tls` of item as a group, or NULL (absent, or reported). */
static const config_setting_t *tls_group(struct conf_loader *ld,
                                         const config_setting_t *item)
{
  const config_setting_t *tls = conf_member_of(item, "tls");

  if (tls && !config_setting_is_group(tls)) {
    conf_fail_at(ld, conf_line_of(tls), "'tls' must be a group { ... }");
    return NULL;
  }
  return tls;
}

static char *get_path(struct conf_loader *ld, const config_setting_t *group,
                      const char *name)
{
  const char *text;
  return conf_get_string(ld, group, name, &text) ? conf_resolve_path(ld, text)
                                                 : NULL;
}

void conf_load_tls_client(struct conf_loader *ld, const config_setting_t *item,
                          struct nlb_tls_client_settings *tls)
{
  static const char *const keys[] = {"ca",   "server_name", "verify",
                                     "cert", "key",         NULL};
  const config_setting_t *s = tls_group(ld, item);
  const char *text;

  if (!s)
    return;
  conf_check_keys(ld, s, "target group tls", keys);
  tls->enabled = true;
  tls->verify = true;
  tls->line = conf_line_of(s);
  tls->ca = get_path(ld, s, "ca");
  tls->cert = get_path(ld, s, "cert");
  tls->key = get_path(ld, s, "key");
  conf_get_bool(ld, s, "verify", &tls->verify);
  if (conf_get_string(ld, s, "server_name", &text)) {
    if (!*text || strlen(text) > 253 || strpbrk(text, " \r\n\t"))
      conf_fail_at(ld, conf_line_of(conf_member_of(s, "server_name")),
                   "server_name must be one DNS name or IP address");
    tls->server_name = conf_dup_or_die(text);
  }
  if (!tls->cert != !tls->key)
    conf_fail_at(ld, tls->line,
                 "target group tls needs both 'cert' and 'key', or neither");
}

static void load_certificates(struct conf_loader *ld, const config_setting_t *s,
                              struct nlb_tls_server_settings *tls)
{
  static const char *const keys[] = {"cert", "key", NULL};
  const config_setting_t *list = conf_get_list(ld, s, "certificates");
  int count = list ? config_setting_length(list) : 0;

  if (count == 0) {
    conf_fail_at(ld, tls->line,
                 "listener tls needs 'certificates', a list of { cert; key; }");
    return;
  }
  tls->certificates =
      conf_calloc_or_die((size_t)count, sizeof(*tls->certificates));
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    struct nlb_tls_certificate_files *c =
        &tls->certificates[tls->n_certificates];

    if (!config_setting_is_group(item)) {
      conf_fail_at(ld, conf_line_of(item),
                   "a certificate must be a group { cert; key; }");
      continue;
    }
    conf_check_keys(ld, item, "certificate", keys);
    c->line = conf_line_of(item);
    c->cert = get_path(ld, item, "cert");
    c->key = get_path(ld, item, "key");
    tls->n_certificates++;
    if (!c->cert || !c->key)
      conf_fail_at(ld, c->line, "a certificate needs both 'cert' and 'key'");
  }
}

/* alpn = [ "h2", "http/1.1" ] as the wire vector OpenSSL selects from. */
static void load_alpn(struct conf_loader *ld, const config_setting_t *s,
                      struct nlb_tls_server_settings *tls)
{
  const config_setting_t *list = conf_get_list(ld, s, "alpn");
  int count = list ? config_setting_length(list) : 0;
  size_t used = 0;

  if (count == 0)
    return;
  tls->alpn = conf_calloc_or_die((size_t)count, 256);
  for (int i = 0; i < count; i++) {
    const config_setting_t *item = config_setting_get_elem(list, i);
    const char *name = config_setting_get_string(item);
    size_t len = name ? strlen(name) : 0;

    if (len == 0 || len > 255) {
      conf_fail_at(ld, conf_line_of(item),
                   "alpn names are strings of 1 to 255 bytes");
      continue;
    }
    tls->alpn[used++] = (unsigned char)len;
    memcpy(tls->alpn + used, name, len);
    used += len;
  }
  tls->alpn_len = used;
}

void conf_load_tls_server(struct conf_loader *ld, const config_setting_t *item,
                          struct nlb_tls_server_settings *tls)
{
  static const char *const keys[] = {"certificates",
                                     "alpn",
                                     "min_version",
                                     "ciphers",
                                     "ciphersuites",
                                     "unknown_sni",
                                     "handshake_timeout",
                                     "max_pending_handshakes",
                                     NULL};
  const config_setting_t *s = tls_group(ld, item);
  const char *text;
  long long value;

  tls->min_version = 0x0303;
  tls->handshake_timeout_ms = 10000;
  tls->max_pending_handshakes = 10000;
  if (!s)
    return;
  conf_check_keys(ld, s, "listener tls", keys);
  tls->enabled = true;
  tls->line = conf_line_of(s);
  load_certificates(ld, s, tls);
  load_alpn(ld, s, tls);
  if (conf_get_string(ld, s, "min_version", &text)) {
    if (strcmp(text, "1.2") == 0)
      tls->min_version = 0x0303;
    else if (strcmp(text, "1.3") == 0)
      tls->min_version = 0x0304;
    else
      conf_fail_at(ld, conf_line_of(conf_member_of(s, "min_version")),
                   "min_version must be \"1.2\" or \"1.3\", not \"%s\"", text);
  }
  if (conf_get_string(ld, s, "ciphers", &text))
    tls->ciphers = conf_dup_or_die(text);
  if (conf_get_string(ld, s, "ciphersuites", &text))
    tls->ciphersuites = conf_dup_or_die(text);
  if (conf_get_string(ld, s, "unknown_sni", &text)) {
    if (strcmp(text, "refuse") == 0)
      tls->refuse_unknown_sni = true;
    else if (strcmp(text, "default") != 0)
      conf_fail_at(ld, conf_line_of(conf_member_of(s, "unknown_sni")),
                   "unknown_sni must be \"default\" or \"refuse\", not \"%s\"",
                   text);
  }
  conf_get_duration(ld, s, "handshake_timeout", 100, 300000,
                    &tls->handshake_timeout_ms);
  if (conf_get_int(ld, s, "max_pending_handshakes", 1, 10000000, &value))
    tls->max_pending_handshakes = (uint64_t)value;
}
