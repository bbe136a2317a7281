# nlbctl: the command-line client of the API (libcurl, jansson). It links
# nothing of the daemon: it is a client like any other.
bin_PROGRAMS += nlbctl
nlbctl_SOURCES = \
	cli/args.c \
	cli/cli.h \
	cli/client.c \
	cli/commands.c \
	cli/commands.h \
	cli/commands_common.c \
	cli/commands_consumer.c \
	cli/commands_operator.c \
	cli/commands_provider.c \
	cli/config.c \
	cli/http.c \
	cli/nlbctl.c \
	cli/output.c
nlbctl_CFLAGS = $(AM_CFLAGS) $(LIBCURL_CFLAGS) $(JANSSON_CFLAGS)
nlbctl_LDADD = $(LIBCURL_LIBS) $(JANSSON_LIBS)

dist_man1_MANS = man/nlbctl.1
dist_bashcompletion_DATA = contrib/bash-completion/nlbctl

TESTS += tests/e2e/test_nlbctl.py
EXTRA_DIST += tests/e2e/test_nlbctl.py

# Needs root and network namespaces; says SKIP without them.
TESTS += tests/e2e/test_readme.py
EXTRA_DIST += tests/e2e/test_readme.py
