/* DNS names: the rules of a private_dns_name (a host name, outside the
 * zone, inside a domain granted to the service's owner) and the names an
 * endpoint answers to. The registry only decides names; nlbd's responder
 * (nlb/dns/dns.c) serves them. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "registry-int.h"

static bool ldh(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Lower-cases name into out and checks its labels: 1-63 bytes of letters,
 * digits, '-' (and '_' when underscore), no '-' at either end. Returns the
 * number of labels, or 0 when the name is not one. */
static size_t labels_ok(const char *name, bool underscore,
                        char out[REG_DNS_NAME_BUF])
{
  size_t len = name ? strlen(name) : 0;
  size_t labels = 0, label_len = 0;

  if (len > 0 && name[len - 1] == '.')
    len--;
  if (len == 0 || len > REG_DNS_NAME_MAX)
    return 0;
  for (size_t i = 0; i <= len; i++) {
    char c = i < len ? name[i] : '.';

    if (c >= 'A' && c <= 'Z')
      c = (char)(c - 'A' + 'a');
    if (c == '.') {
      if (label_len == 0 || label_len > 63 || out[i - 1] == '-')
        return 0;
      labels++;
      label_len = 0;
    } else if (ldh(c) || (underscore && c == '_')) {
      if (label_len == 0 && c == '-')
        return 0;
      label_len++;
    } else {
      return 0;
    }
    out[i] = i < len ? c : '\0';
  }
  return labels;
}

int reg_dns_name_parse(const char *name, size_t min_labels,
                       char out[REG_DNS_NAME_BUF])
{
  size_t labels = labels_ok(name, false, out);

  if (labels == 0 || labels < min_labels) {
    out[0] = '\0';
    return -EINVAL;
  }
  return 0;
}

/* True when name is domain or a name below it (both as parse writes
 * them). */
static bool name_within(const char *name, const char *domain)
{
  size_t len = strlen(name), dlen = strlen(domain);

  if (dlen == 0 || len < dlen || strcmp(name + len - dlen, domain) != 0)
    return false;
  return len == dlen || name[len - dlen - 1] == '.';
}

static bool granted(const struct config_principal *owner, const char *name)
{
  for (size_t i = 0; owner && i < owner->n_dns_domains; i++)
    if (name_within(name, owner->dns_domains[i]))
      return true;
  return false;
}

int reg_private_dns_name_check(struct reg *reg, const char *owner,
                               const char *private_dns_name,
                               char out[REG_DNS_NAME_BUF],
                               struct reg_error *err)
{
  const struct config_principal *p = reg_find_principal(&reg->config, owner);
  const char *zone = reg->config.dns_zone;

  out[0] = '\0';
  if (private_dns_name == NULL || private_dns_name[0] == '\0')
    return 0;
  if (reg_dns_name_parse(private_dns_name, 2, out) < 0)
    return reg_set_error(err, -EINVAL, "private_dns_name",
                         "private_dns_name must be a host name: labels of "
                         "1-63 letters, digits or '-' (not first or last), "
                         "at least two, %d bytes in all",
                         REG_DNS_NAME_MAX);
  /* The zone's names are nlb's own: a provider must not shadow them. */
  if (zone[0] && (name_within(out, zone) || name_within(zone, out)))
    return reg_set_error(err, -EINVAL, "private_dns_name",
                         "private_dns_name %s falls in or above the zone %s",
                         out, zone);
  if (p != NULL && p->role == REG_ROLE_OPERATOR)
    return 0;
  if (!granted(p, out))
    return reg_set_error(err, -EACCES, "private_dns_name",
                         "private_dns_name %s is not in a DNS domain granted "
                         "to %s",
                         out, owner);
  return 0;
}

/* ---- an endpoint's names ------------------------------------------------ */

static int add_name(struct reg_endpoint *e, const char *name)
{
  char **grown;

  for (size_t i = 0; i < e->n_dns_names; i++)
    if (strcmp(e->dns_names[i], name) == 0)
      return 0;
  grown = realloc(e->dns_names, (e->n_dns_names + 1) * sizeof(*grown));
  if (grown == NULL)
    return -ENOMEM;
  e->dns_names = grown;
  if ((grown[e->n_dns_names] = strdup(name)) == NULL)
    return -ENOMEM;
  e->n_dns_names++;
  return 0;
}

/* "LABELS.ZONE" when it makes a valid name (a service's name may hold a
 * label too long, or an empty one). */
static int add_zone_name(struct reg_endpoint *e, const char *labels,
                         const char *zone)
{
  char text[REG_DNS_NAME_BUF * 2], name[REG_DNS_NAME_BUF];

  snprintf(text, sizeof(text), "%s.%s", labels, zone);
  if (labels_ok(text, true, name) == 0)
    return 0;
  return add_name(e, name);
}

int reg_endpoint_dns_names(struct reg *reg, struct reg_endpoint *e)
{
  const char *zone = reg->config.dns_zone;
  const struct config_network *net = reg_find_network(&reg->config, e->network);
  const struct config_principal *owner;
  int r;

  if (zone[0] == '\0' || e->state != REG_EP_AVAILABLE || !net || !net->dns)
    return 0;
  if ((r = add_zone_name(e, e->id, zone)) < 0 ||
      (!reg_name_like_endpoint_id(e->service) &&
       (r = add_zone_name(e, e->service, zone)) < 0))
    return r;
  if (!e->private_dns || e->private_dns_name[0] == '\0')
    return 0;
  /* A grant the operator took back stops the name resolving. */
  owner = reg_find_principal(&reg->config, e->owner);
  if (owner == NULL || (owner->role != REG_ROLE_OPERATOR &&
                        !granted(owner, e->private_dns_name)))
    return 0;
  return add_name(e, e->private_dns_name);
}
