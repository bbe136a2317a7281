/* Private to the stores: encodings both backends share, so that a SQLite
 * file and a PostgreSQL database hold the same text for the same thing. */
#ifndef NLB_STORE_INT_H
#define NLB_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "nlb/registry.h"

/* allowed_sources are kept as one newline-separated column: they are always
 * read and written whole, and a CIDR holds no newline. join returns a
 * malloc'd string (NULL: ENOMEM); split fills an allocated array. */
char *store_join_lines(char *const *v, size_t n);
int store_split_lines(const char *s, char ***out, size_t *n);

/* Placements read as one aggregated column: "NODE\tOPEN\tUPDATED\tREASON"
 * lines (OPEN 1 or 0). Fills e->placements sorted by node. */
int store_parse_placements(const char *s, struct reg_endpoint *e);
/* A reason as stored in a placement line: tabs and newlines become
 * spaces. */
void store_placement_reason(const char *in, char *out, size_t len);

/* Names as stored (the C enums' order is not part of the format). */
const char *store_state_name(enum reg_endpoint_state state);
int store_state_parse(const char *s, enum reg_endpoint_state *out);
const char *store_event_name(enum reg_event_type type);
int store_event_parse(const char *s, enum reg_event_type *out);

#endif
