/* Intrusive doubly linked lists: an object embeds a struct nlb_list per list
 * it can sit on, so joining a list never allocates. Not thread-safe: a list
 * belongs to the thread that owns the objects on it. */
#ifndef NLB_LIST_H
#define NLB_LIST_H

#include <stddef.h>

struct nlb_list {
  struct nlb_list *prev;
  struct nlb_list *next;
};

#define NLB_CONTAINER_OF(ptr, type, member)                                    \
  ((type *)((char *)(ptr)-offsetof(type, member)))

static inline void nlb_list_init(struct nlb_list *head)
{
  head->prev = head;
  head->next = head;
}

static inline int nlb_list_empty(const struct nlb_list *head)
{
  return head->next == head;
}

/* Appends node at the tail of head. */
static inline void nlb_list_append(struct nlb_list *head, struct nlb_list *node)
{
  node->prev = head->prev;
  node->next = head;
  head->prev->next = node;
  head->prev = node;
}

/* Unlinks node and leaves it pointing at itself, so removing twice is safe. */
static inline void nlb_list_remove(struct nlb_list *node)
{
  node->prev->next = node->next;
  node->next->prev = node->prev;
  node->prev = node;
  node->next = node;
}

#define NLB_LIST_FOREACH_SAFE(pos, tmp, head)                                  \
  for ((pos) = (head)->next, (tmp) = (pos)->next; (pos) != (head);             \
       (pos) = (tmp), (tmp) = (pos)->next)

#endif
