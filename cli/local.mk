# nlbctl: the command-line client of the API (libcurl, jansson). It links
# nothing of the daemon: it is a client like any other.
bin_PROGRAMS += nlbctl
nlbctl_SOURCES = \
	cli/args.c \
	cli/cli.h \
	cli/client.c \
	cli/config.c \
	cli/follow.c \
	cli/http.c \
	cli/nlbctl.c \
	cli/output.c \
	cli/yaml.c \
	cli/commands/commands.h \
	cli/commands/common.c \
	cli/commands/complete.c \
	cli/commands/consumer.c \
	cli/commands/contexts.c \
	cli/commands/operator.c \
	cli/commands/provider.c \
	cli/commands/table.c
# The commands include "cli.h" from the folder above.
nlbctl_CPPFLAGS = $(AM_CPPFLAGS) -I$(top_srcdir)/cli
nlbctl_CFLAGS = $(AM_CFLAGS) $(LIBCURL_CFLAGS) $(JANSSON_CFLAGS)
nlbctl_LDADD = $(LIBCURL_LIBS) $(JANSSON_LIBS)

dist_man1_MANS = man/nlbctl.1
dist_bashcompletion_DATA = contrib/bash-completion/nlbctl
dist_zshcompletion_DATA = contrib/zsh-completion/_nlbctl

TESTS += tests/e2e/test_nlbctl.py
EXTRA_DIST += tests/e2e/test_nlbctl.py
TESTS += tests/e2e/test_nlbctl_usability.py
EXTRA_DIST += tests/e2e/test_nlbctl_usability.py

# Needs root and network namespaces; says SKIP without them.
TESTS += tests/e2e/test_readme.py
EXTRA_DIST += tests/e2e/test_readme.py
