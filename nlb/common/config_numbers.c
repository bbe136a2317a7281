/* Numbers the file writes that libconfig would silently wrap or clip: read
 * from the file's own text (and its @include files) before libconfig parses
 * it, so 2^64 is an error, not 0. */
#include "nlb/common/config-loader.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nlb/common/duration.h"

/* libconfig 1.5 reads an integer without the L suffix into an int and
 * wraps what does not fit (4294967376 reads as 80, 0xFFFFFFFF as -1); with
 * the suffix it saturates at the int64 limits. What it read can then no
 * longer be told from a small number, so the integers are checked in the
 * text before libconfig reads it. No setting takes a number near these
 * limits, so one that does not fit is out of range wherever it is. */
#define INCLUDE_DEPTH_MAX 10

static bool is_name_char(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '*';
}

static bool is_digit(char c)
{
  return c >= '0' && c <= '9';
}

/* Reads one number at p (libconfig's integer, integer64, hex, hex64 and
 * float forms); reports an integer that libconfig would not keep. Returns
 * the end of the number. */
static const char *check_number(struct conf_loader *ld, const char *path,
                                int line, const char *p)
{
  const char *start = p, *q;
  unsigned long long magnitude;
  bool hex = false, suffix, fits;

  if (*p == '-' || *p == '+')
    p++;
  if (p == start && p[0] == '0' && (p[1] == 'x' || p[1] == 'X') &&
      isxdigit((unsigned char)p[2])) {
    hex = true;
    for (p += 2; isxdigit((unsigned char)*p);)
      p++;
  } else {
    while (is_digit(*p))
      p++;
    q = p;
    if (*q == '.')
      for (q++; is_digit(*q);)
        q++;
    if ((*q == 'e' || *q == 'E') &&
        (is_digit(q[1]) || ((q[1] == '-' || q[1] == '+') && is_digit(q[2])))) {
      for (q += 2; is_digit(*q);)
        q++;
    }
    if (q != p)
      return q; /* a float: its range is checked where it is used */
  }
  suffix = *p == 'L';
  errno = 0;
  if (hex) {
    magnitude = strtoull(start, NULL, 16);
    fits = errno == 0 && magnitude <= (suffix ? LLONG_MAX : INT_MAX);
  } else {
    long long value = strtoll(start, NULL, 10);
    fits = errno == 0 && (suffix || (value >= INT_MIN && value <= INT_MAX));
  }
  if (suffix)
    p += p[1] == 'L' ? 2 : 1;
  if (!fits)
    conf_fail_in(ld, path, line, "integer %.*s%s is out of range",
                 (int)(p - start > 40 ? 40 : p - start), start,
                 p - start > 40 ? "..." : "");
  return p;
}

/* An "@include" line: the file it names is checked too, as libconfig
 * (without an include directory) opens it: relative to the working
 * directory. */
static const char *check_include(struct conf_loader *ld, const char *p,
                                 int depth)
{
  const char *name, *end;
  char *included;

  p += strlen("@include");
  if (*p != ' ' && *p != '\t')
    return p;
  while (*p == ' ' || *p == '\t')
    p++;
  if (*p != '"')
    return p;
  name = p + 1;
  end = strchr(name, '"');
  if (!end || memchr(name, '\n', (size_t)(end - name)))
    return name;
  included = strndup(name, (size_t)(end - name));
  if (included && depth < INCLUDE_DEPTH_MAX)
    conf_check_integers_in(ld, included, depth + 1);
  free(included);
  return end + 1;
}

static void check_integers(struct conf_loader *ld, const char *path,
                           const char *text, int depth)
{
  const char *p = text;
  bool line_start = true;
  int line = 1;

  while (*p) {
    if (*p == '\n') {
      line++;
      line_start = true;
      p++;
    } else if (*p == ' ' || *p == '\t' || *p == '\r') {
      p++;
    } else if (line_start && strncmp(p, "@include", 8) == 0) {
      p = check_include(ld, p, depth);
      line_start = false;
    } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
      p += strcspn(p, "\n");
    } else if (p[0] == '/' && p[1] == '*') {
      const char *end = strstr(p + 2, "*/");
      for (end = end ? end + 2 : p + strlen(p); p < end; p++)
        line += *p == '\n';
    } else if (*p == '"') {
      for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && p[1])
          p++;
        line += *p == '\n';
      }
      p += *p == '"';
      line_start = false;
    } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
               *p == '*') {
      while (is_name_char(*p))
        p++;
      line_start = false;
    } else if (is_digit(*p) ||
               ((*p == '-' || *p == '+' || *p == '.') &&
                (is_digit(p[1]) || (p[1] == '.' && is_digit(p[2]))))) {
      p = check_number(ld, path, line, p);
      line_start = false;
    } else {
      p++;
      line_start = false;
    }
  }
}

/* Reads the file and checks its integers; a file that cannot be read is
 * left to libconfig, which says so. */
void conf_check_integers_in(struct conf_loader *ld, const char *path, int depth)
{
  FILE *f = fopen(path, "r");
  char *text = NULL;
  size_t size = 0;
  size_t got;
  char chunk[4096];

  if (!f)
    return;
  while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0) {
    char *grown = realloc(text, size + got + 1);
    if (!grown)
      goto close_file;
    text = grown;
    memcpy(text + size, chunk, got);
    size += got;
  }
  if (text) {
    text[size] = '\0';
    check_integers(ld, path, text, depth);
  }
close_file:
  free(text);
  fclose(f);
}
