/* nlbctl's settings: the flags win over the environment, which wins over
 * the config file, which wins over the defaults. */
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

/* What the config file says; strings malloc'd, NULL when not set. */
struct config_file {
  char *path;
  char *api;
  char *token_file;
  char *token;
  char *cacert;
};

static void config_file_free(struct config_file *cf)
{
  free(cf->path);
  free(cf->api);
  free(cf->token_file);
  if (cf->token != NULL)
    explicit_bzero(cf->token, strlen(cf->token));
  free(cf->token);
  free(cf->cacert);
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

/* Stores value into the field key names. Returns 0, -ENOENT for an
 * unknown key, -ENOMEM. */
static int config_set(struct config_file *cf, const char *key, char *value)
{
  static const struct {
    const char *key;
    size_t offset;
  } keys[] = {
      {"api", offsetof(struct config_file, api)},
      {"token_file", offsetof(struct config_file, token_file)},
      {"token", offsetof(struct config_file, token)},
      {"cacert", offsetof(struct config_file, cacert)},
  };
  size_t n = strlen(value);
  if (n >= 2 && (value[0] == '"' || value[0] == '\'') &&
      value[n - 1] == value[0]) {
    value[n - 1] = '\0';
    value++;
  }
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
    if (strcmp(key, keys[i].key) != 0)
      continue;
    char **field = (char **)((char *)cf + keys[i].offset);
    if (*field != NULL)
      explicit_bzero(*field, strlen(*field));
    free(*field);
    *field = strdup(value);
    return *field != NULL ? 0 : -ENOMEM;
  }
  return -ENOENT;
}

/* Reads "key = value" lines; '#' starts a comment line. Errors name the
 * line, never its value (it may be the token). */
static int config_parse(struct config_file *cf, FILE *f)
{
  char line[TOKEN_MAX + 256];
  unsigned number = 0;

  while (fgets(line, sizeof line, f) != NULL) {
    number++;
    if (strchr(line, '\n') == NULL && !feof(f)) {
      complain("%s:%u: line too long", cf->path, number);
      return CLI_EXIT_USAGE;
    }
    char *s = trim(line);
    if (*s == '\0' || *s == '#')
      continue;
    char *eq = strchr(s, '=');
    if (eq == NULL) {
      complain("%s:%u: expected \"key = value\"", cf->path, number);
      return CLI_EXIT_USAGE;
    }
    *eq = '\0';
    char *key = trim(s);
    int r = config_set(cf, key, trim(eq + 1));
    if (r == -ENOENT)
      complain("%s:%u: unknown key \"%s\" (api, token_file, token, cacert)",
               cf->path, number, key);
    else if (r != 0)
      complain("out of memory");
    explicit_bzero(line, sizeof line);
    if (r != 0)
      return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

static int config_read(struct config_file *cf)
{
  struct stat st;

  cf->path = config_path();
  if (cf->path == NULL)
    return CLI_EXIT_OK;
  FILE *f = fopen(cf->path, "r");
  if (f == NULL) {
    if (errno == ENOENT || errno == ENOTDIR)
      return CLI_EXIT_OK;
    complain("%s: %s", cf->path, strerror(errno));
    return CLI_EXIT_USAGE;
  }
  int r = config_parse(cf, f);
  if (r == CLI_EXIT_OK && cf->token != NULL && fstat(fileno(f), &st) == 0 &&
      (st.st_mode & 077) != 0) {
    /* As ssh does with a private key: a secret others can read is not a
     * secret any more; say so rather than use it. */
    complain("%s holds a token and is readable by others (mode %04o): "
             "chmod 600 %s",
             cf->path, (unsigned)(st.st_mode & 07777), cf->path);
    r = CLI_EXIT_USAGE;
  }
  fclose(f);
  return r;
}

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

static int load_token(const struct cli_overrides *o,
                      const struct config_file *cf, char **token)
{
  const char *value;

  if (o->token_file != NULL)
    return token_read_file(o->token_file, token);
  if ((value = env("NLB_TOKEN")) != NULL)
    return token_copy(value, "NLB_TOKEN", token);
  if ((value = env("NLB_TOKEN_FILE")) != NULL)
    return token_read_file(value, token);
  if (cf->token_file != NULL) {
    char *path = resolve_path(cf->token_file, cf->path);
    int r = path != NULL ? token_read_file(path, token) : CLI_EXIT_USAGE;
    free(path);
    return r;
  }
  if (cf->token != NULL)
    return token_copy(cf->token, cf->path, token);
  return CLI_EXIT_OK;
}

static int load_api(const struct cli_overrides *o, const struct config_file *cf,
                    char **api)
{
  const char *value = o->api, *from = "--api";

  if (value == NULL && (value = env("NLB_API")) != NULL)
    from = "NLB_API";
  if (value == NULL && (value = cf->api) != NULL)
    from = cf->path;
  if (value == NULL)
    value = CLI_DEFAULT_API;
  if (strncmp(value, "http://", 7) != 0 && strncmp(value, "https://", 8) != 0) {
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

int cli_settings_load(const struct cli_overrides *overrides,
                      struct cli_settings *settings)
{
  struct config_file cf = {0};

  memset(settings, 0, sizeof *settings);
  int r = config_read(&cf);
  if (r == CLI_EXIT_OK)
    r = load_api(overrides, &cf, &settings->api);
  if (r == CLI_EXIT_OK)
    r = load_token(overrides, &cf, &settings->token);
  if (r == CLI_EXIT_OK) {
    const char *cacert = overrides->cacert;
    if (cacert != NULL)
      settings->cacert = strdup(cacert);
    else if (cf.cacert != NULL)
      settings->cacert = resolve_path(cf.cacert, cf.path);
    if ((cacert != NULL || cf.cacert != NULL) && settings->cacert == NULL) {
      complain("out of memory");
      r = CLI_EXIT_USAGE;
    }
  }
  settings->insecure = overrides->insecure;
  settings->verbose = overrides->verbose;
  settings->timeout_ms = overrides->timeout_ms;
  config_file_free(&cf);
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
