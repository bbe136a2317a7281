/* nlbctl's resources and commands: the one table the command line (nlbctl.c)
 * looks a command up in. Each row names its function in commands_*.c. */
#include <stdint.h>

#include "commands.h"

/* ---- the table ----------------------------------------------------------- */

static const struct cli_option list_options[] = {PAGE_SIZE_OPTION, END_OPTIONS};
static const struct cli_option no_options[] = {END_OPTIONS};

static const struct cli_option service_create_options[] = {
    {"load-balancer", 0, "LB", false,
     "the load balancer to publish (required)"},
    {"allow", 0, "PRINCIPAL", true,
     "a consumer allowed to connect (repeat, or a,b; \"*\": every "
     "consumer)"},
    {"acceptance", 0, NULL, false,
     "connections wait for the provider's acceptance (the default)"},
    {"no-acceptance", 0, NULL, false,
     "allowed consumers' endpoints are available at once"},
    {"connection-limit", 0, "N", false,
     "live endpoints per consumer (0, the default: no limit)"},
    {"private-dns-name", 0, "NAME", false,
     "your host name for the service, in a DNS domain the operator granted "
     "you; it resolves to each endpoint that opts in"},
    END_OPTIONS};

static const struct cli_option service_update_options[] = {
    {"acceptance", 0, NULL, false, "connections wait for acceptance"},
    {"no-acceptance", 0, NULL, false,
     "new endpoints of allowed consumers are available at once"},
    {"connection-limit", 0, "N", false,
     "live endpoints per consumer (0: no limit)"},
    {"private-dns-name", 0, "NAME", false,
     "your host name for the service (in a domain granted to you)"},
    {"no-private-dns-name", 0, NULL, false, "no private DNS name"},
    END_OPTIONS};

static const struct cli_option permissions_remove_options[] = {
    {"reject-endpoints", 0, NULL, false,
     "also reject the live endpoints of the principals removed"},
    END_OPTIONS};

static const struct cli_option state_list_options[] = {
    {"state", 0, "STATE", false,
     "only this state: pendingAcceptance, available, rejected, deleted, "
     "expired, failed"},
    PAGE_SIZE_OPTION,
    END_OPTIONS};

static const struct cli_option decide_options[] = {
    {"consumer", 0, "NAME", true,
     "every pending connection of this consumer (repeat, or a,b)"},
    END_OPTIONS};

static const struct cli_option reject_options[] = {
    {"consumer", 0, "NAME", true,
     "every pending or available connection of this consumer"},
    END_OPTIONS};

static const struct cli_option endpoint_create_options[] = {
    {"service", 0, "SERVICE", false,
     "the service's name or ID (or give it as the argument)"},
    {"network", 0, "NETWORK", false, "the network to listen in (required)"},
    {"address", 0, "ADDRESS", false,
     "the address in that network (default: the lowest free one)"},
    {"allow-source", 0, "CIDR", true,
     "a client range allowed in (repeat, or a,b; default: any)"},
    {"private-dns", 0, NULL, false,
     "the service's private DNS name resolves to this endpoint, in its "
     "network"},
    END_OPTIONS};

static const struct cli_option endpoint_update_options[] = {
    {"allow-source", 0, "CIDR", true,
     "the client ranges allowed in, replacing the list (repeat, or a,b)"},
    {"any-source", 0, NULL, false, "let every client in"},
    {"private-dns", 0, NULL, false, "opt into the service's private DNS name"},
    {"no-private-dns", 0, NULL, false, "opt out of it"},
    END_OPTIONS};

static const struct cli_option target_add_options[] = {
    {"weight", 0, "N", false, "its share, 1..1000 (default 1)"}, END_OPTIONS};

static const struct cli_option events_options[] = {
    {"follow", 'f', NULL, false,
     "keep printing events as they happen, until interrupted"},
    {"after", 0, "SEQ", false,
     "the events after sequence number SEQ (default: all kept; with "
     "--follow, from now)"},
    END_OPTIONS};

static const struct cli_option principal_create_options[] = {
    {"role", 0, "ROLE", false, "operator, provider or consumer (required)"},
    END_OPTIONS};

static const struct cli_option token_create_options[] = {
    {"expires-at", 0, "TIME", false,
     "when it stops working, RFC 3339 (2030-01-02T03:04:05Z)"},
    {"expires-in", 0, "DURATION", false,
     "when it stops working, from now: 90d, 12h, 30m, 45s"},
    END_OPTIONS};

static const struct cli_option network_create_options[] = {
    {"range", 0, "CIDR", false, "the addresses endpoints get there (required)"},
    {"netns", 0, "NAME", false,
     "the network namespace (the same name on every node; default: "
     "addresses on the host)"},
    {"allow", 0, "PRINCIPAL", true,
     "a consumer that may place endpoints there (repeat, or a,b; default: "
     "any)"},
    END_OPTIONS};

const struct cli_resource cli_resources[] = {
    {"services", "Endpoint services: a provider's load balancer, published"},
    {"permissions", "The consumers allowed to connect to a service"},
    {"connections", "The endpoints consumers made to a service: accept or "
                    "reject them"},
    {"available-services", "The services a consumer may connect to"},
    {"endpoints", "A consumer's endpoints: a service's listeners in its "
                  "network"},
    {"target-groups", "Target groups and the health of their targets"},
    {"targets", "Register and deregister targets at run time"},
    {"events", "The endpoint events: connect, accept, reject, delete, ..."},
    {"nodes", "The nlbd nodes sharing the registry"},
    {"principals", "Who may call the API: operators, providers, consumers"},
    {"tokens", "A principal's API tokens: create, rotate, revoke"},
    {"networks", "Where consumers' endpoints live"},
    {NULL, NULL},
};

#define ANY SIZE_MAX

const struct cli_command cli_commands[] = {
    {"services", "list", "[--page-size N]", "List the services you own",
     "An operator sees every service.\n", list_options, 0, 0,
     cli_services_list},
    {"services", "get", "SERVICE", "Show a service (by name or ID)", NULL,
     no_options, 1, 1, cli_services_get},
    {"services", "create",
     "NAME --load-balancer LB [--allow PRINCIPAL]... [--no-acceptance] "
     "[--connection-limit N] [--private-dns-name NAME]",
     "Publish a load balancer as a service",
     "Example:\n  nlbctl services create payments --load-balancer payments-lb "
     "--allow shop\n",
     service_create_options, 1, 1, cli_services_create},
    {"services", "update",
     "SERVICE [--acceptance|--no-acceptance] [--connection-limit N] "
     "[--private-dns-name NAME|--no-private-dns-name]",
     "Change acceptance, the limit or the private DNS name", NULL,
     service_update_options, 1, 1, cli_services_update},
    {"services", "delete", "SERVICE", "Delete a service",
     "The API refuses (409) while endpoints are pendingAcceptance or "
     "available:\nreject them first.\n",
     no_options, 1, 1, cli_services_delete},

    {"permissions", "get", "SERVICE", "List the principals allowed to connect",
     NULL, no_options, 1, 1, cli_permissions_get},
    {"permissions", "add", "SERVICE PRINCIPAL...", "Allow principals",
     "\"*\" allows every consumer.\n", no_options, 2, ANY, cli_permissions_add},
    {"permissions", "remove", "SERVICE PRINCIPAL... [--reject-endpoints]",
     "Disallow principals",
     "Their existing endpoints stay, unless --reject-endpoints.\n",
     permissions_remove_options, 2, ANY, cli_permissions_remove},

    {"connections", "list", "SERVICE [--state STATE] [--page-size N]",
     "List the endpoints consumers made to a service", NULL, state_list_options,
     1, 1, cli_connections_list},
    {"connections", "accept", "SERVICE [EP-ID...] [--consumer NAME]...",
     "Accept pending connections",
     "Accepted endpoints become available. Each endpoint that cannot be\n"
     "accepted is printed on stderr, and nlbctl exits 1.\n",
     decide_options, 1, ANY, cli_connections_accept},
    {"connections", "reject", "SERVICE [EP-ID...] [--consumer NAME]...",
     "Reject pending connections, or revoke available ones",
     "Rejecting an available endpoint closes its listeners and resets its\n"
     "flows. Each endpoint that cannot be rejected is printed on stderr,\n"
     "and nlbctl exits 1.\n",
     reject_options, 1, ANY, cli_connections_reject},

    {"available-services", NULL, "[list] [--page-size N]",
     "List the services you may connect to", NULL, list_options, 0, 0,
     cli_available_services},

    {"endpoints", "list", "[--state STATE] [--page-size N]",
     "List your endpoints", "An operator sees every consumer's.\n",
     state_list_options, 0, 0, cli_endpoints_list},
    {"endpoints", "get", "ENDPOINT", "Show an endpoint",
     "ENDPOINT is an ID (ep-...), or a service's name or ID when you have\n"
     "one live endpoint of it (or one endpoint at all).\n",
     no_options, 1, 1, cli_endpoints_get},
    {"endpoints", "create",
     "--service SERVICE --network NETWORK [--address ADDRESS] "
     "[--allow-source CIDR]... [--private-dns]",
     "Connect to a service: an endpoint in your network",
     "It is pendingAcceptance until the provider accepts it, or available\n"
     "at once when the service needs no acceptance.\n",
     endpoint_create_options, 0, 1, cli_endpoints_create},
    {"endpoints", "update",
     "ENDPOINT [--allow-source CIDR...|--any-source] "
     "[--private-dns|--no-private-dns]",
     "Change the clients an endpoint lets in, or its private DNS",
     "ENDPOINT as for 'endpoints get'. Applies to new flows (and DNS\n"
     "answers) at once.\n",
     endpoint_update_options, 1, 1, cli_endpoints_update},
    {"endpoints", "delete", "ENDPOINT", "Delete an endpoint",
     "ENDPOINT as for 'endpoints get'.\n", no_options, 1, 1,
     cli_endpoints_delete},

    {"target-groups", "list", "[--page-size N]",
     "List the target groups and their targets", NULL, list_options, 0, 0,
     cli_target_groups_list},
    {"target-groups", "get", "NAME", "Show a target group's targets", NULL,
     no_options, 1, 1, cli_target_groups_get},

    {"targets", "add", "TARGET-GROUP ADDRESS:PORT [--weight N]",
     "Register a target", "It starts initial and is health-cli_checked.\n",
     target_add_options, 2, 2, cli_targets_add},
    {"targets", "remove", "TARGET-GROUP ADDRESS:PORT", "Deregister a target",
     "It drains: running flows go on for the group's "
     "deregistration_delay.\n",
     no_options, 2, 2, cli_targets_remove},

    {"events", NULL, "[--follow] [--after SEQ]", "Print the endpoint events",
     "Without --follow: the events kept (after SEQ), then exit. With it: the\n"
     "events from now (or after SEQ) as they happen, until interrupted;\n"
     "when nlbd ends the stream (a reload), nlbctl follows on from the last\n"
     "event it printed. Providers and consumers see their own events.\n",
     events_options, 0, 0, cli_events_read},

    {"nodes", "list", "[--page-size N]", "List the nodes", NULL, list_options,
     0, 0, cli_nodes_list},
    {"nodes", "drain", "NODE", "Drain a node", NULL, no_options, 1, 1,
     cli_nodes_drain},

    {"principals", "list", "[--page-size N]", "List the principals",
     "Those of the config (SOURCE config, read-only here) and those made\n"
     "through the API.\n",
     list_options, 0, 0, cli_principals_list},
    {"principals", "create", "NAME --role ROLE",
     "Make a principal and its first token",
     "The token is printed once: nlb keeps only its hash.\n",
     principal_create_options, 1, 1, cli_principals_create},
    {"principals", "delete", "NAME", "Delete a principal and its tokens",
     "The API refuses (409) while it owns services or holds live\n"
     "endpoints.\n",
     no_options, 1, 1, cli_principals_delete},

    {"tokens", "list", "PRINCIPAL [--page-size N]",
     "List a principal's tokens (never the tokens themselves)", NULL,
     list_options, 1, 1, cli_tokens_list},
    {"tokens", "create", "PRINCIPAL [--expires-at TIME|--expires-in DURATION]",
     "Make another token for a principal",
     "To rotate: create a second token, move clients to it, revoke the\n"
     "first. The token is printed once.\n",
     token_create_options, 1, 1, cli_tokens_create},
    {"tokens", "revoke", "PRINCIPAL TOKEN-ID", "Revoke a token",
     "Every node refuses it within a second, and closes the API\n"
     "connections and event streams it opened.\n",
     no_options, 2, 2, cli_tokens_revoke},

    {"networks", "list", "[--page-size N]", "List the networks", NULL,
     list_options, 0, 0, cli_networks_list},
    {"networks", "create",
     "NAME --range CIDR [--netns NAME] [--allow PRINCIPAL]...",
     "Make a network for consumers' endpoints",
     "Every node opens its endpoints in the namespace of that name on its\n"
     "own host.\n",
     network_create_options, 1, 1, cli_networks_create},
    {"networks", "delete", "NAME", "Delete a network",
     "The API refuses (409) while live endpoints are in it.\n", no_options, 1,
     1, cli_networks_delete},

    {NULL, NULL, NULL, NULL, NULL, NULL, 0, 0, NULL},
};
