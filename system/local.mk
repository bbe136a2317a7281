# What `make install` puts around nlbd: the default config, the systemd
# unit, logrotate and tmpfiles snippets, the man pages, and the state and
# log directories. Each is made from its .in file with the directories
# configure chose, at make time (as the GNU coding standards ask), so
# `make prefix=...` and DESTDIR work.
edit_paths = sed \
	-e 's|@sbindir[@]|$(sbindir)|g' \
	-e 's|@sysconfdir[@]|$(sysconfdir)|g' \
	-e 's|@localstatedir[@]|$(localstatedir)|g' \
	-e 's|@PACKAGE_VERSION[@]|$(PACKAGE_VERSION)|g' \
	-e 's|@SYSTEMD_SERVICE_TYPE[@]|$(SYSTEMD_SERVICE_TYPE)|g'

SYSTEM_FILES = system/nlb.cfg system/nlb.service system/nlb-upgrade.service \
	system/nlb.logrotate system/nlb.tmpfiles
man_MANS = man/nlbd.8 man/nlb.cfg.5
EXTRA_DIST += $(SYSTEM_FILES:=.in) $(man_MANS:=.in)
CLEANFILES += $(SYSTEM_FILES) $(man_MANS)
noinst_DATA += $(SYSTEM_FILES)

$(SYSTEM_FILES) $(man_MANS): Makefile
	$(AM_V_GEN)$(MKDIR_P) $(@D) && rm -f $@ $@.tmp && \
	$(edit_paths) $(srcdir)/$@.in > $@.tmp && mv $@.tmp $@
system/nlb.cfg: $(srcdir)/system/nlb.cfg.in
system/nlb.service: $(srcdir)/system/nlb.service.in
system/nlb-upgrade.service: $(srcdir)/system/nlb-upgrade.service.in
system/nlb.logrotate: $(srcdir)/system/nlb.logrotate.in
system/nlb.tmpfiles: $(srcdir)/system/nlb.tmpfiles.in
man/nlbd.8: $(srcdir)/man/nlbd.8.in
man/nlb.cfg.5: $(srcdir)/man/nlb.cfg.5.in

systemdsystemunit_DATA = system/nlb.service system/nlb-upgrade.service

nlbconfdir = $(sysconfdir)/nlb

# The config is the administrator's once installed: an existing one is
# kept (dpkg handles its own conffiles). Uninstall removes it only while it
# is still the default.
install-data-local: $(SYSTEM_FILES)
	$(MKDIR_P) '$(DESTDIR)$(nlbconfdir)' \
		'$(DESTDIR)$(sysconfdir)/logrotate.d' '$(DESTDIR)$(tmpfilesdir)' \
		'$(DESTDIR)$(localstatedir)/lib/nlb' \
		'$(DESTDIR)$(localstatedir)/log/nlb'
	@if test -f '$(DESTDIR)$(nlbconfdir)/nlb.cfg'; then \
	  echo "keeping the existing $(DESTDIR)$(nlbconfdir)/nlb.cfg"; \
	else \
	  echo " $(INSTALL_DATA) system/nlb.cfg '$(DESTDIR)$(nlbconfdir)/nlb.cfg'"; \
	  $(INSTALL_DATA) system/nlb.cfg '$(DESTDIR)$(nlbconfdir)/nlb.cfg'; \
	fi
	$(INSTALL_DATA) system/nlb.logrotate \
		'$(DESTDIR)$(sysconfdir)/logrotate.d/nlb'
	$(INSTALL_DATA) system/nlb.tmpfiles '$(DESTDIR)$(tmpfilesdir)/nlb.conf'

uninstall-local:
	@if cmp -s system/nlb.cfg '$(DESTDIR)$(nlbconfdir)/nlb.cfg'; then \
	  echo " rm -f '$(DESTDIR)$(nlbconfdir)/nlb.cfg'"; \
	  rm -f '$(DESTDIR)$(nlbconfdir)/nlb.cfg'; \
	elif test -f '$(DESTDIR)$(nlbconfdir)/nlb.cfg'; then \
	  echo "keeping the changed $(DESTDIR)$(nlbconfdir)/nlb.cfg"; \
	fi
	rm -f '$(DESTDIR)$(sysconfdir)/logrotate.d/nlb' \
		'$(DESTDIR)$(tmpfilesdir)/nlb.conf'
