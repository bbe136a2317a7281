/* nlbctl's settings: the flags win over the environment, which wins over
 * the config file, which wins over the defaults; a context named on the
 * command line (or by NLB_CONTEXT) stands between the flags and the
 * environment. The config file's contexts are edited here too, for the
 * `config` verbs. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

/* A token is one HTTP header value; anything longer is not a token. */
#define TOKEN_MAX 4096
#define LINE_MAX_LEN (TOKEN_MAX + 256)

void cli_config_free(struct cli_config *config)
{
  for (size_t i = 0; i <= config->n_contexts; i++) {
    struct cli_config_context *c =
        i == 0 ? &config->top : &config->contexts[i - 1];
    free(c->name);
    free(c->api);
    free(c->token_file);
    if (c->token != NULL)
      explicit_bzero(c->token, strlen(c->token));
    free(c->token);
    free(c->cacert);
  }
  free(config->contexts);
  free(config->path);
  free(config->current_context);
  memset(config, 0, sizeof *config);
}

static void complain(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

static void complain(const char *fmt, ...)
{
  va_list ap;
  fputs("nlbctl: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

static char *join(const char *a, const char *b)
{
  size_t n = strlen(a) + strlen(b) + 1;
  char *s = malloc(n);
  if (s != NULL)
    snprintf(s, n, "%s%s", a, b);
  return s;
}

static const char *home_dir(void)
{
  const char *home = getenv("HOME");
  if (home != NULL && home[0] == '/')
    return home;
  struct passwd *pw = getpwuid(getuid());
  return pw != NULL ? pw->pw_dir : NULL;
}

/* $XDG_CONFIG_HOME/nlb/nlbctl.conf, else ~/.config/nlb/nlbctl.conf; NULL
 * when there is no home to look in. */
static char *config_path(void)
{
  const char *xdg = getenv("XDG_CONFIG_HOME");
  if (xdg != NULL && xdg[0] == '/')
    return join(xdg, "/nlb/nlbctl.conf");
  const char *home = home_dir();
  return home != NULL ? join(home, "/.config/nlb/nlbctl.conf") : NULL;
}

/* "~/x" is x in the home directory; a relative path is relative to the
 * config file's directory, so the file means the same from anywhere. */
static char *resolve_path(const char *path, const char *config)
{
  if (path[0] == '~' && path[1] == '/' && home_dir() != NULL)
    return join(home_dir(), path + 1);
  if (path[0] == '/' || config == NULL)
    return strdup(path);
  const char *slash = strrchr(config, '/');
  size_t dir_len = slash != NULL ? (size_t)(slash - config) + 1 : 0;
  char *s = malloc(dir_len + strlen(path) + 1);
  if (s != NULL) {
    memcpy(s, config, dir_len);
    strcpy(s + dir_len, path);
  }
  return s;
}

static char *trim(char *s)
{
  while (isspace((unsigned char)*s))
    s++;
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1]))
    s[--n] = '\0';
  return s;
}

bool cli_context_name_ok(const char *name)
{
  size_t n = strlen(name);
  if (n == 0 || n > 63 || name[0] == '-' || name[0] == '.')
    return false;
  for (const char *c = name; *c != '\0'; c++)
    if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
      return false;
  return true;
}

/* ---- reading ------------------------------------------------------------ */

/* What one line of the file is; its parts point into the line, which
 * classify() cuts with NULs. */
enum line_kind { LINE_BLANK, LINE_KEY, LINE_SECTION, LINE_BAD };

struct line {
  enum line_kind kind;
  char *key, *value; /* LINE_KEY */
  char *section;     /* LINE_SECTION: the context's name */
  const char *why;   /* LINE_BAD */
};

static struct line classify(char *text)
{
  struct line l = {LINE_BLANK, NULL, NULL, NULL, NULL};
  char *s = trim(text);

  if (*s == '\0' || *s == '#')
    return l;
  if (*s == '[') {
    size_t n = strlen(s);
    l.kind = LINE_BAD;
    l.why = "expected \"[context NAME]\"";
    if (s[n - 1] != ']')
      return l;
    s[n - 1] = '\0';
    s = trim(s + 1);
    if (strncmp(s, "context", 7) != 0 || !isspace((unsigned char)s[7]))
      return l;
    l.section = trim(s + 8);
    if (!cli_context_name_ok(l.section)) {
      l.why = "a context's name is 1-63 of A-Z a-z 0-9 . _ - (not "
              "starting with . or -)";
      return l;
    }
    l.kind = LINE_SECTION;
    return l;
  }
  char *eq = strchr(s, '=');
  if (eq == NULL) {
    l.kind = LINE_BAD;
    l.why = "expected \"key = value\"";
    return l;
  }
  *eq = '\0';
  l.kind = LINE_KEY;
  l.key = trim(s);
  l.value = trim(eq + 1);
  size_t n = strlen(l.value);
  if (n >= 2 && (l.value[0] == '"' || l.value[0] == '\'') &&
      l.value[n - 1] == l.value[0]) {
    l.value[n - 1] = '\0';
    l.value++;
  }
  return l;
}

/* Stores value into the field key names. Returns 0, -ENOENT for an
 * unknown key, -ENOMEM. */
static int context_set(struct cli_config_context *c, const char *key,
                       const char *value)
{
  static const struct {
    const char *key;
    size_t offset;
  } keys[] = {
      {"api", offsetof(struct cli_config_context, api)},
      {"token_file", offsetof(struct cli_config_context, token_file)},
      {"token", offsetof(struct cli_config_context, token)},
      {"cacert", offsetof(struct cli_config_context, cacert)},
  };
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    if (strcmp(key, keys[i].key) != 0)
      continue;
    char **field = (char **)((char *)c + keys[i].offset);
    if (*field != NULL)
      explicit_bzero(*field, strlen(*field));
    free(*field);
    *field = strdup(value);
    return *field != NULL ? 0 : -ENOMEM;
  }
  return -ENOENT;
}

static struct cli_config_context *context_add(struct cli_config *config,
                                              const char *name)
{
  struct cli_config_context *grown =
      realloc(config->contexts, (config->n_contexts + 1) * sizeof *grown);
  if (grown == NULL)
    return NULL;
  config->contexts = grown;
  struct cli_config_context *c = &grown[config->n_contexts];
  memset(c, 0, sizeof *c);
  if ((c->name = strdup(name)) == NULL)
    return NULL;
  config->n_contexts++;
  return c;
}

/* One line's key into the context it is in (NULL: the top). Returns
 * CLI_EXIT_OK or CLI_EXIT_USAGE (printed). */
static int parse_key(struct cli_config *config, struct cli_config_context *in,
                     const struct line *l, unsigned number)
{
  if (strcmp(l->key, "current_context") == 0 && in == NULL) {
    free(config->current_context);
    config->current_context = strdup(l->value);
    if (config->current_context != NULL)
      return CLI_EXIT_OK;
    complain("out of memory");
    return CLI_EXIT_USAGE;
  }
  int r = context_set(in != NULL ? in : &config->top, l->key, l->value);
  if (r == -ENOENT)
    complain("%s:%u: unknown key \"%s\" (api, token_file, token, "
             "cacert%s)",
             config->path, number, l->key,
             in == NULL ? ", current_context" : "");
  else if (r != 0)
    complain("out of memory");
  return r == 0 ? CLI_EXIT_OK : CLI_EXIT_USAGE;
}

/* Reads "key = value" lines, and "[context NAME]" sections of them; '#'
 * starts a comment line. Errors name the line, never its value (it may be
 * the token). */
static int config_parse(struct cli_config *config, FILE *f)
{
  char text[LINE_MAX_LEN];
  unsigned number = 0;
  struct cli_config_context *in = NULL;
  int r = CLI_EXIT_OK;

  while (r == CLI_EXIT_OK && fgets(text, sizeof text, f) != NULL) {
    number++;
    if (strchr(text, '\n') == NULL && !feof(f)) {
      complain("%s:%u: line too long", config->path, number);
      r = CLI_EXIT_USAGE;
      break;
    }
    struct line l = classify(text);
    switch (l.kind) {
    case LINE_BLANK:
      break;
    case LINE_BAD:
      complain("%s:%u: %s", config->path, number, l.why);
      r = CLI_EXIT_USAGE;
      break;
    case LINE_SECTION:
      if (cli_config_find(config, l.section) != NULL) {
        complain("%s:%u: context \"%s\" is defined twice", config->path, number,
                 l.section);
        r = CLI_EXIT_USAGE;
      } else if ((in = context_add(config, l.section)) == NULL) {
        complain("out of memory");
        r = CLI_EXIT_USAGE;
      }
      break;
    case LINE_KEY:
      r = parse_key(config, in, &l, number);
      break;
    }
    explicit_bzero(text, sizeof text);
  }
  return r;
}

static bool holds_token(const struct cli_config *config)
{
  if (config->top.token != NULL)
    return true;
  for (size_t i = 0; i < config->n_contexts; i++)
    if (config->contexts[i].token != NULL)
      return true;
  return false;
}

int cli_config_read(struct cli_config *config)
{
  struct stat st;

  memset(config, 0, sizeof *config);
  config->path = config_path();
  if (config->path == NULL)
    return CLI_EXIT_OK;
  FILE *f = fopen(config->path, "r");
  if (f == NULL) {
    if (errno == ENOENT || errno == ENOTDIR)
      return CLI_EXIT_OK;
    complain("%s: %s", config->path, strerror(errno));
    return CLI_EXIT_USAGE;
  }
  int r = config_parse(config, f);
  if (r == CLI_EXIT_OK && holds_token(config) && fstat(fileno(f), &st) == 0 &&
      (st.st_mode & 077) != 0) {
    /* As ssh does with a private key: a secret others can read is not a
     * secret any more; say so rather than use it. */
    complain("%s holds a token and is readable by others (mode %04o): "
             "chmod 600 %s",
             config->path, (unsigned)(st.st_mode & 07777), config->path);
    r = CLI_EXIT_USAGE;
  }
  fclose(f);
  return r;
}

const struct cli_config_context *
cli_config_find(const struct cli_config *config, const char *name)
{
  for (size_t i = 0; i < config->n_contexts; i++)
    if (strcmp(config->contexts[i].name, name) == 0)
      return &config->contexts[i];
  return NULL;
}

/* ---- editing ------------------------------------------------------------ */

/* The file's lines, each malloc'd without its newline. */
struct lines {
  char **text;
  size_t n;
};

static void lines_free(struct lines *l)
{
  for (size_t i = 0; i < l->n; i++) {
    explicit_bzero(l->text[i], strlen(l->text[i]));
    free(l->text[i]);
  }
  free(l->text);
  l->text = NULL;
  l->n = 0;
}

/* Inserts text (taken over) before line at. */
static void lines_insert(struct lines *l, size_t at, char *text)
{
  char **grown = realloc(l->text, (l->n + 1) * sizeof *grown);
  if (grown == NULL || text == NULL)
    cli_out_of_memory();
  l->text = grown;
  memmove(&l->text[at + 1], &l->text[at], (l->n - at) * sizeof *l->text);
  l->text[at] = text;
  l->n++;
}

static void lines_remove(struct lines *l, size_t at)
{
  free(l->text[at]);
  memmove(&l->text[at], &l->text[at + 1], (l->n - at - 1) * sizeof *l->text);
  l->n--;
}

static int lines_read(const char *path, struct lines *l, mode_t *mode)
{
  char text[LINE_MAX_LEN];
  struct stat st;

  memset(l, 0, sizeof *l);
  *mode = 0600;
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    if (errno == ENOENT)
      return CLI_EXIT_OK;
    complain("%s: %s", path, strerror(errno));
    return CLI_EXIT_ERROR;
  }
  if (fstat(fileno(f), &st) == 0)
    *mode = st.st_mode & 07777;
  while (fgets(text, sizeof text, f) != NULL) {
    text[strcspn(text, "\n")] = '\0';
    lines_insert(l, l->n, strdup(text));
  }
  explicit_bzero(text, sizeof text);
  fclose(f);
  return CLI_EXIT_OK;
}

/* mkdir -p of path's directory, new ones readable by the user alone. */
static int make_parents(const char *path)
{
  char *dir = strdup(path);
  if (dir == NULL)
    cli_out_of_memory();
  for (char *slash = strchr(dir + 1, '/'); slash != NULL;
       slash = strchr(slash + 1, '/')) {
    *slash = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
      complain("%s: %s", dir, strerror(errno));
      free(dir);
      return CLI_EXIT_ERROR;
    }
    *slash = '/';
  }
  free(dir);
  return CLI_EXIT_OK;
}

/* Replaces the file at once (a new file renamed over it), keeping its
 * mode: a reader sees the old file or the new one, never half of it. */
static int lines_write(const char *path, const struct lines *l, mode_t mode)
{
  if (make_parents(path) != CLI_EXIT_OK)
    return CLI_EXIT_ERROR;
  char *tmp = join(path, ".XXXXXX");
  if (tmp == NULL)
    cli_out_of_memory();
  int fd = mkstemp(tmp);
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  int r = CLI_EXIT_ERROR;
  if (f == NULL) {
    complain("%s: %s", tmp, strerror(errno));
    if (fd >= 0)
      close(fd);
    goto out;
  }
  for (size_t i = 0; i < l->n; i++)
    fprintf(f, "%s\n", l->text[i]);
  if (fchmod(fd, mode) != 0 || fflush(f) != 0 || fsync(fd) != 0) {
    complain("%s: %s", tmp, strerror(errno));
    fclose(f);
    unlink(tmp);
    goto out;
  }
  if (fclose(f) != 0 || rename(tmp, path) != 0) {
    complain("%s: %s", path, strerror(errno));
    unlink(tmp);
    goto out;
  }
  r = CLI_EXIT_OK;
out:
  free(tmp);
  return r;
}

/* What line i is (a copy is cut, not the line). */
static struct line line_at(const struct lines *l, size_t i, char *copy)
{
  snprintf(copy, LINE_MAX_LEN, "%s", l->text[i]);
  return classify(copy);
}

/* The lines of context name, [*first, *end) after its header (name NULL:
 * the lines before any context). false when there is no such context. */
static bool section_range(const struct lines *l, const char *name,
                          size_t *first, size_t *end)
{
  char copy[LINE_MAX_LEN];
  bool in = name == NULL;

  *first = 0;
  for (size_t i = 0; i < l->n; i++) {
    struct line k = line_at(l, i, copy);
    if (k.kind != LINE_SECTION)
      continue;
    if (in) {
      *end = i;
      return true;
    }
    if (strcmp(k.section, name) == 0) {
      in = true;
      *first = i + 1;
    }
  }
  *end = l->n;
  return in;
}

static char *key_line(const char *key, const char *value)
{
  size_t n = strlen(value);
  /* Quotes keep white space at either end, and a value that starts with a
   * quote. */
  bool quote = n > 0 && (isspace((unsigned char)value[0]) ||
                         isspace((unsigned char)value[n - 1]) ||
                         value[0] == '"' || value[0] == '\'');
  return cli_path("%s = %s%s%s", key, quote ? "\"" : "", value,
                  quote ? "\"" : "");
}

/* Sets key in [first, *end): its line replaced, else a new line after the
 * range's last non-blank one (*end grows by one). */
static void set_key(struct lines *l, size_t first, size_t *end, const char *key,
                    const char *value)
{
  char copy[LINE_MAX_LEN];
  size_t after = first;

  for (size_t i = first; i < *end; i++) {
    struct line k = line_at(l, i, copy);
    if (k.kind == LINE_KEY && strcmp(k.key, key) == 0) {
      free(l->text[i]);
      l->text[i] = key_line(key, value);
      return;
    }
    if (l->text[i][strspn(l->text[i], " \t")] != '\0')
      after = i + 1; /* after comments too: they belong to the range */
  }
  lines_insert(l, after, key_line(key, value));
  (*end)++;
}

static void remove_key(struct lines *l, size_t first, size_t *end,
                       const char *key)
{
  char copy[LINE_MAX_LEN];
  for (size_t i = first; i < *end;) {
    struct line k = line_at(l, i, copy);
    if (k.kind == LINE_KEY && strcmp(k.key, key) == 0) {
      lines_remove(l, i);
      (*end)--;
    } else {
      i++;
    }
  }
}

int cli_config_write_current(const struct cli_config *config, const char *name)
{
  struct lines l;
  mode_t mode;
  size_t first, end;

  int r = lines_read(config->path, &l, &mode);
  if (r != CLI_EXIT_OK)
    return r;
  section_range(&l, NULL, &first, &end);
  if (name != NULL)
    set_key(&l, first, &end, "current_context", name);
  else
    remove_key(&l, first, &end, "current_context");
  r = lines_write(config->path, &l, mode);
  lines_free(&l);
  return r;
}

int cli_config_write_context(const struct cli_config *config,
                             const struct cli_config_context *values)
{
  const char *keys[] = {"api", "token_file", "cacert"};
  const char *given[] = {values->api, values->token_file, values->cacert};
  struct lines l;
  mode_t mode;
  size_t first, end;

  int r = lines_read(config->path, &l, &mode);
  if (r != CLI_EXIT_OK)
    return r;
  if (!section_range(&l, values->name, &first, &end)) {
    if (l.n > 0 && l.text[l.n - 1][0] != '\0')
      lines_insert(&l, l.n, strdup(""));
    lines_insert(&l, l.n, cli_path("[context %s]", values->name));
    first = end = l.n;
  }
  for (size_t i = 0; i < 3; i++)
    if (given[i] != NULL)
      set_key(&l, first, &end, keys[i], given[i]);
  r = lines_write(config->path, &l, mode);
  lines_free(&l);
  return r;
}

int cli_config_remove_context(const struct cli_config *config, const char *name)
{
  struct lines l;
  mode_t mode;
  size_t first, end;

  int r = lines_read(config->path, &l, &mode);
  if (r != CLI_EXIT_OK)
    return r;
  if (section_range(&l, name, &first, &end)) {
    /* The header, its lines, and the blank line that set it apart. */
    first--;
    if (first > 0 && l.text[first - 1][0] == '\0')
      first--;
    while (end > first)
      lines_remove(&l, --end);
  }
  if (config->current_context != NULL &&
      strcmp(config->current_context, name) == 0) {
    section_range(&l, NULL, &first, &end);
    remove_key(&l, first, &end, "current_context");
  }
  r = lines_write(config->path, &l, mode);
  lines_free(&l);
  return r;
}

/* ---- settings ------------------------------------------------------------ */

/* A token goes into a header: printable ASCII without spaces only. */
static bool token_ok(const char *token)
{
  if (*token == '\0')
    return false;
  for (const char *c = token; *c != '\0'; c++)
    if (*c <= ' ' || *c > '~')
      return false;
  return true;
}

static int token_read_file(const char *path, char **token)
{
  char buf[TOKEN_MAX + 2];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    complain("token file %s: %s", path, strerror(errno));
    return CLI_EXIT_USAGE;
  }
  size_t len = 0;
  ssize_t n;
  while (len < sizeof buf - 1 &&
         (n = read(fd, buf + len, sizeof buf - 1 - len)) > 0)
    len += (size_t)n;
  close(fd);
  buf[len] = '\0';
  char *text = trim(buf);
  int r = CLI_EXIT_OK;
  if (len > TOKEN_MAX) {
    complain("token file %s: longer than %d bytes", path, TOKEN_MAX);
    r = CLI_EXIT_USAGE;
  } else if (!token_ok(text)) {
    complain("token file %s: %s", path,
             *text == '\0' ? "empty" : "holds characters a token cannot have");
    r = CLI_EXIT_USAGE;
  } else if ((*token = strdup(text)) == NULL) {
    complain("out of memory");
    r = CLI_EXIT_USAGE;
  }
  explicit_bzero(buf, sizeof buf);
  return r;
}

static int token_copy(const char *value, const char *from, char **token)
{
  if (strlen(value) > TOKEN_MAX || !token_ok(value)) {
    complain("the token in %s holds characters a token cannot have", from);
    return CLI_EXIT_USAGE;
  }
  *token = strdup(value);
  if (*token == NULL) {
    complain("out of memory");
    return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

static const char *env(const char *name)
{
  const char *value = getenv(name);
  return value != NULL && value[0] != '\0' ? value : NULL;
}

/* Where the settings come from, strongest first: the flags, the context
 * the command line (or NLB_CONTEXT) named, the environment, the file's
 * current context, else the file's keys outside any context. A context
 * stands alone: what it does not set is not taken from the keys outside
 * it, so one installation's token never goes to another's API. */
struct sources {
  const struct cli_overrides *flags;
  const struct cli_config *config;
  const struct cli_config_context *chosen; /* --context, NLB_CONTEXT */
  const struct cli_config_context *file;   /* current_context, else top */
};

static int token_from_context(const struct sources *s,
                              const struct cli_config_context *c, char **token)
{
  if (c->token_file != NULL) {
    char *path = resolve_path(c->token_file, s->config->path);
    int r = path != NULL ? token_read_file(path, token) : CLI_EXIT_USAGE;
    free(path);
    return r;
  }
  if (c->token != NULL)
    return token_copy(c->token, s->config->path, token);
  return CLI_EXIT_OK;
}

static int load_token(const struct sources *s, char **token)
{
  const char *value;

  if (s->flags->token_file != NULL)
    return token_read_file(s->flags->token_file, token);
  if (s->chosen != NULL)
    return token_from_context(s, s->chosen, token);
  if ((value = env("NLB_TOKEN")) != NULL)
    return token_copy(value, "NLB_TOKEN", token);
  if ((value = env("NLB_TOKEN_FILE")) != NULL)
    return token_read_file(value, token);
  return token_from_context(s, s->file, token);
}

static int load_api(const struct sources *s, char **api)
{
  const char *value = s->flags->api, *from = "--api";

  if (value == NULL && s->chosen != NULL) {
    value = s->chosen->api != NULL ? s->chosen->api : CLI_DEFAULT_API;
    from = s->config->path;
  }
  if (value == NULL && (value = env("NLB_API")) != NULL)
    from = "NLB_API";
  if (value == NULL && (value = s->file->api) != NULL)
    from = s->config->path;
  if (value == NULL)
    value = CLI_DEFAULT_API;
  if (!cli_api_ok(value)) {
    complain("%s: the API address must start with http:// or https:// "
             "(\"%s\")",
             from, value);
    return CLI_EXIT_USAGE;
  }
  *api = strdup(value);
  if (*api == NULL) {
    complain("out of memory");
    return CLI_EXIT_USAGE;
  }
  size_t n = strlen(*api);
  while (n > 0 && (*api)[n - 1] == '/')
    (*api)[--n] = '\0';
  return CLI_EXIT_OK;
}

static int load_cacert(const struct sources *s, char **cacert)
{
  const struct cli_config_context *c = s->chosen != NULL ? s->chosen : s->file;
  if (s->flags->cacert != NULL)
    *cacert = strdup(s->flags->cacert);
  else if (c->cacert != NULL)
    *cacert = resolve_path(c->cacert, s->config->path);
  else
    return CLI_EXIT_OK;
  if (*cacert == NULL) {
    complain("out of memory");
    return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

/* The context a name stands for; NULL after saying there is none. */
static const struct cli_config_context *
named_context(const struct cli_config *config, const char *name,
              const char *from)
{
  const struct cli_config_context *c = cli_config_find(config, name);
  if (c == NULL)
    complain("%s: no context \"%s\" in %s (nlbctl config get-contexts "
             "lists them)",
             from, name, config->path != NULL ? config->path : "the config");
  return c;
}

static int choose(struct sources *s)
{
  const char *name = s->flags->context, *from = "--context";

  if (name == NULL && (name = env("NLB_CONTEXT")) != NULL)
    from = "NLB_CONTEXT";
  s->file = &s->config->top;
  if (name != NULL) {
    s->chosen = named_context(s->config, name, from);
    return s->chosen != NULL ? CLI_EXIT_OK : CLI_EXIT_USAGE;
  }
  if (s->config->current_context != NULL) {
    s->file =
        named_context(s->config, s->config->current_context, "current_context");
    if (s->file == NULL)
      return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

bool cli_api_ok(const char *api)
{
  return strncmp(api, "http://", 7) == 0 || strncmp(api, "https://", 8) == 0;
}

int cli_settings_load(const struct cli_overrides *overrides,
                      struct cli_settings *settings)
{
  struct cli_config config;
  struct sources s = {.flags = overrides, .config = &config};

  memset(settings, 0, sizeof *settings);
  int r = cli_config_read(&config);
  if (r == CLI_EXIT_OK)
    r = choose(&s);
  if (r == CLI_EXIT_OK)
    r = load_api(&s, &settings->api);
  if (r == CLI_EXIT_OK)
    r = load_token(&s, &settings->token);
  if (r == CLI_EXIT_OK)
    r = load_cacert(&s, &settings->cacert);
  settings->insecure = overrides->insecure;
  settings->verbose = overrides->verbose;
  settings->timeout_ms = overrides->timeout_ms;
  cli_config_free(&config);
  if (r != CLI_EXIT_OK)
    cli_settings_free(settings);
  return r;
}

void cli_settings_free(struct cli_settings *settings)
{
  if (settings->token != NULL)
    explicit_bzero(settings->token, strlen(settings->token));
  free(settings->token);
  free(settings->api);
  free(settings->cacert);
  memset(settings, 0, sizeof *settings);
}
