/* nlbctl, the command-line client of nlb's API: the pieces its files share.
 *
 * One process runs one command: nlbctl.c parses the command line and the
 * settings (flags, environment, config file: config.c), finds the command
 * in the table of commands.c and runs it. Commands talk to the API through
 * http.c (libcurl: a fresh connection per request, h2c with prior
 * knowledge for http://, ALPN for https://) and print through output.c
 * (aligned tables, or the API's JSON unchanged).
 *
 * Single-threaded. Errors are printed where they happen and travel up as
 * an exit status: CLI_EXIT_OK, CLI_EXIT_ERROR (the API said no, or could
 * not be reached) or CLI_EXIT_USAGE (the command line or the settings are
 * wrong). The token is secret: it is held only in struct cli_client, sent
 * only in the Authorization header, and never printed. */
#ifndef NLB_CLI_H
#define NLB_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#define CLI_EXIT_OK 0
#define CLI_EXIT_ERROR 1
#define CLI_EXIT_USAGE 2

#define CLI_DEFAULT_API "http://127.0.0.1:9180"

/* ---- settings (config.c) ------------------------------------------------ */

/* Where to reach the API and as whom; every string malloc'd, owned here. */
struct cli_settings {
  char *api;       /* base URL, no trailing slash */
  char *token;     /* NULL: send no token; wiped by cli_settings_free */
  char *cacert;    /* NULL: the system's CAs */
  bool insecure;   /* do not verify the server's certificate */
  bool verbose;    /* one line per request on stderr (never the token) */
  long timeout_ms; /* per request; streams ignore it */
};

/* The flags that override the environment and the config file; NULL or
 * false when not given. */
struct cli_overrides {
  const char *api;
  const char *token_file;
  const char *cacert;
  bool insecure;
  bool verbose;
  long timeout_ms;
};

/* Fills *settings from, in order of precedence, the flags, the environment
 * (NLB_API, NLB_TOKEN, NLB_TOKEN_FILE) and the config file
 * ($XDG_CONFIG_HOME/nlb/nlbctl.conf, else ~/.config/nlb/nlbctl.conf).
 * Returns CLI_EXIT_OK, or CLI_EXIT_USAGE after printing why (a bad config
 * line, an unreadable token file, a config file that holds a token and is
 * readable by group or others). */
int cli_settings_load(const struct cli_overrides *overrides,
                      struct cli_settings *settings);

/* Frees the strings, wiping the token first. */
void cli_settings_free(struct cli_settings *settings);

/* ---- HTTP (http.c) ------------------------------------------------------ */

/* One answer of the API; body NUL-terminated, malloc'd, owned here. */
struct cli_response {
  long status;
  char *body;
  size_t len;
};

/* Once per process, before any request / at exit. */
int cli_http_init(void);
void cli_http_cleanup(void);

/* Sends METHOD path (already percent-encoded, with its query) with an
 * optional JSON body. Returns 0 when an answer arrived, whatever its
 * status; CLI_EXIT_ERROR after printing why none did (connection refused,
 * TLS, timeout). release the response with cli_response_free. */
int cli_http_request(const struct cli_settings *settings, const char *method,
                     const char *path, const char *body,
                     struct cli_response *response);

void cli_response_free(struct cli_response *response);

/* Streams GET path, calling on_line with each complete line (without its
 * newline) as it arrives. With idle_ms > 0 the stream is closed once
 * nothing arrived for that long after the answer began. Returns 0 when the
 * stream ended (the server ended it, or idle_ms passed), CLI_EXIT_ERROR
 * after printing why it could not be read; a non-2xx answer is returned in
 * *response (its body whole) instead of being streamed. on_line returning
 * nonzero stops the stream. */
int cli_http_stream(const struct cli_settings *settings, const char *path,
                    long idle_ms, int (*on_line)(const char *line, void *arg),
                    void *arg, struct cli_response *response);

/* Percent-encodes one path segment or query value; malloc'd, NULL when out
 * of memory. */
char *cli_escape(const char *text);

/* ---- output (output.c) -------------------------------------------------- */

/* Says "out of memory" and exits CLI_EXIT_ERROR: a command cannot go on
 * without memory, and every caller would do just that. */
void cli_out_of_memory(void) __attribute__((noreturn));

/* strdup that exits on no memory. */
char *cli_strdup(const char *s);

enum cli_format { CLI_FORMAT_TABLE, CLI_FORMAT_JSON };

/* A column of a list: header, and the object's key it shows (format, when
 * set, renders the cell instead: the text is malloc'd). */
struct cli_column {
  const char *header;
  const char *key;
  char *(*format)(const json_t *object, const char *key);
};

/* Prints API error answer as "STATUS CODE: message" on stderr (the body
 * itself when it is not the API's error shape). Returns CLI_EXIT_ERROR. */
int cli_print_api_error(const struct cli_response *response);

/* Prints the objects of array as a table with columns[0..n), headers
 * first; an empty array prints "No WHAT found." on stderr instead. */
void cli_print_table(const json_t *array, const struct cli_column *columns,
                     size_t n, const char *what);

/* Prints object as "key: value" lines in the API's key order, aligned;
 * nested arrays of objects one item a line. */
void cli_print_object(const json_t *object);

/* The text of a JSON value for a cell: strings as they are, arrays joined
 * with ",", "-" for empty or absent. malloc'd. */
char *cli_value_text(const json_t *value);

/* Prints body as it came, adding the newline it may lack. */
void cli_print_raw(const char *body, size_t len);

/* ---- calls (client.c) ---------------------------------------------------- */

struct cli_context;

/* printf into a malloc'd string; exits on no memory (as do the others of
 * this section: a command cannot go on without memory). */
char *cli_path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cli_escape that exits on no memory. */
char *cli_segment(const char *text);

/* Sends METHOD path with body (borrowed; NULL: none). Returns CLI_EXIT_OK
 * with *response holding a 2xx answer (free it), else CLI_EXIT_ERROR after
 * printing the API's error or why there was no answer. */
int cli_call(const struct cli_context *context, const char *method,
             const char *path, const json_t *body,
             struct cli_response *response);

/* The answer's body parsed; NULL after saying it is not JSON. */
json_t *cli_answer_json(const struct cli_response *response);

/* Prints one answer: as it came (json), or its object's keys and values
 * (table). */
int cli_show(const struct cli_context *context,
             const struct cli_response *response);

/* GETs path?query (query encoded, or NULL) and every following page while
 * the answers carry "next_token"; *merged gets the first page's object
 * with the key's arrays of all pages joined, without next_token (a new
 * reference). page_size, when set, is sent as limit=. When first is not
 * NULL and there was one page, *first holds that answer as it came (else
 * its body is NULL). Returns CLI_EXIT_OK or CLI_EXIT_ERROR (printed). */
int cli_list(const struct cli_context *context, const char *path,
             const char *query, const char *key, const char *page_size,
             json_t **merged, struct cli_response *first);

/* cli_list, then prints the list: a table of columns[0..n), or the JSON
 * (as it came when it was one page). what names the items when there are
 * none ("No services found."). */
int cli_show_list(const struct cli_context *context, const char *path,
                  const char *query, const char *key, const char *page_size,
                  const struct cli_column *columns, size_t n, const char *what);

/* Prints a list read by cli_list as JSON: first as it came when it is
 * set, else merged. */
void cli_print_list_json(const json_t *merged,
                         const struct cli_response *first);

/* The ID of the endpoint name stands for: name itself when it is an
 * endpoint ID, else the one live endpoint whose service has that name or
 * ID (the only endpoint of that service at all when none is live).
 * *id is malloc'd. Returns CLI_EXIT_OK, CLI_EXIT_ERROR (none, or the API
 * failed) or CLI_EXIT_USAGE (several: their IDs are printed). */
int cli_endpoint_id(const struct cli_context *context, const char *name,
                    char **id);

/* ---- commands (commands.c, nlbctl.c) ------------------------------------ */

/* An option of a command: --name VALUE, or --name alone when value_name is
 * NULL. Values given several times accumulate; commas split them too when
 * list is set. */
struct cli_option {
  const char *name;
  char short_name;
  const char *value_name;
  bool list;
  const char *help;
};

struct cli_given {
  const struct cli_option *option;
  const char *value;
};

/* A parsed command line (the strings point into argv). */
struct cli_args {
  char **positional;
  size_t n_positional;
  struct cli_given *given;
  size_t n_given;
};

/* Everything a command runs with. */
struct cli_context {
  const struct cli_command *command; /* the one running */
  struct cli_settings settings;
  enum cli_format format;
};

struct cli_command {
  const char *resource;
  const char *verb; /* NULL: a resource without verbs (events) */
  const char *synopsis;
  const char *summary;
  const char *description;
  const struct cli_option *options; /* terminated by a NULL name */
  size_t min_args;
  size_t max_args; /* SIZE_MAX: any number */
  int (*run)(struct cli_context *context, const struct cli_args *args);
};

/* The table of commands, ended by a NULL resource. */
extern const struct cli_command cli_commands[];

/* The resources, in the order help lists them, ended by a NULL name. */
struct cli_resource {
  const char *name;
  const char *summary;
};
extern const struct cli_resource cli_resources[];

/* Prints the usage of a command (help: its whole help) on out. */
void cli_command_usage(const struct cli_command *command, FILE *out, bool help);
/* Prints text from column on, wrapped before column 80 and indented by
 * indent on the lines after the first. */
void cli_print_wrapped(const char *text, int column, int indent, FILE *out);
/* Prints a table of options, one a line, their help wrapped. */
void cli_print_options(const struct cli_option *options, FILE *out);

/* The last value of --name, "" for a flag that was given, NULL if absent. */
const char *cli_arg(const struct cli_args *args, const char *name);

/* Every value of --name (comma-split for list options), in order: a
 * malloc'd array of *n strings (free the array and each string); NULL
 * with *n = 0 when absent. */
char **cli_arg_list(const struct cli_args *args, const char *name, size_t *n);

/* Appends the comma-separated parts of value (empty ones left out) to
 * the malloc'd array *strings of *n malloc'd strings. */
void cli_strings_split(char ***strings, size_t *n, const char *value);

void cli_strings_free(char **strings, size_t n);

/* Prints "nlbctl: message" and the usage of command on stderr; returns
 * CLI_EXIT_USAGE. */
int cli_usage_error(const struct cli_command *command, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
