#!/usr/bin/env python3
"""End to end: the web console (docs/console.md) in a real browser.

nlbd with a registry, the API and the principals of apitest (an operator,
providers, consumers), a load balancer with an echo target; headless
Chromium driven by Selenium (Debian's chromium, chromium-driver,
python3-selenium). Each role signs in with its token and does its work
through the page, and the API is asked what came of it:

  - the page, its files and the redirect carry the security headers
    (Content-Security-Policy, X-Frame-Options...), an ETag and 304 on
    If-None-Match, without a token, over plain HTTP and over TLS;
  - a provider creates a service and edits it; a connection request made
    through the API while the page is open appears without a reload
    (the event stream); it accepts one and rejects another, then accepts
    two at once with the select-all box;
  - a consumer creates an endpoint and deletes it, and sees its state
    change when the provider accepts;
  - an operator sees targets with their health and reasons, nodes with
    their applied seq, creates a principal and a token (each shown once),
    sees recent events and charts of the flows through its listeners;
  - markup that reaches the page is shown as text, no element, no alert:
    an API error that quotes a network namespace typed with markup, and
    every field of every view of every role against a stand-in API whose
    every string is markup (nlbd's own names are tame);
  - the token stays in sessionStorage: localStorage is empty, there are
    no cookies, and signing out forgets it; the page breaks no rule of its
    Content-Security-Policy (the browser's console says none).

Screenshots of each view go to $top_builddir/tests/e2e/console-screens/.
SKIP when Chromium, its driver or Selenium is missing or cannot start."""

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nlbtest  # noqa: E402
from apitest import NlbdApi, token  # noqa: E402
from nlbtest import (Skip, TOP_BUILDDIR, TOP_SRCDIR, free_port,  # noqa: E402
                     wait_until)

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENS = os.path.join(TOP_BUILDDIR, "tests", "e2e", "console-screens")
WAIT = 30  # seconds for any state the page should reach
MARKUP = "<img src=x onerror=alert(1)>"
POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
          "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
          "form-action 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {
    "content-security-policy": POLICY,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


def selenium():
    """The selenium package: Debian's python3-selenium lives in the
    system's dist-packages, which another python3 on PATH may not read."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        sys.path.append("/usr/lib/python3/dist-packages")
        try:
            import selenium  # noqa: F401
        except ImportError as e:
            raise Skip("python3-selenium is not installed (%s)" % e)
    from selenium import webdriver
    return webdriver


class Browser:
    """Headless Chromium through chromedriver, in a profile of its own;
    stopped by nlbtest's runner if the test does not stop it."""

    def __init__(self, insecure=False):
        webdriver = selenium()
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
        for path in (CHROMIUM, CHROMEDRIVER):
            if not os.path.exists(path):
                raise Skip("%s is not installed (chromium, chromium-driver)"
                           % path)
        self.profile = tempfile.mkdtemp(prefix="nlb-console-chromium-")
        options = Options()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1400,1000",
                    "--no-first-run", "--disable-extensions",
                    "--user-data-dir=" + self.profile):
            options.add_argument(arg)
        if insecure:  # the test's own self-signed certificate
            options.add_argument("--ignore-certificate-errors")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = None
        nlbtest._track(self)
        try:
            self.driver = webdriver.Chrome(
                service=Service(CHROMEDRIVER, log_path=os.devnull),
                options=options)
        except (WebDriverException, OSError) as e:
            self.stop()
            raise Skip("Chromium cannot start here: %s" %
                       str(e).strip().splitlines()[0])
        self.driver.set_page_load_timeout(WAIT)
        self.driver.set_script_timeout(WAIT)
        self.log = []

    def stop(self):
        nlbtest._untrack(self)
        if self.driver is not None:
            try:
                self.driver.quit()
            except Exception:
                pass
            self.driver = None
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- waiting and finding ---------------------------------------------

    def wait(self, condition, what, timeout=WAIT):
        """condition(driver)'s first true value; elements re-drawn under
        it (stale) are looked for again."""
        from selenium.common.exceptions import (
            StaleElementReferenceException, TimeoutException)
        from selenium.webdriver.support.ui import WebDriverWait
        try:
            return WebDriverWait(
                self.driver, timeout, poll_frequency=0.1,
                ignored_exceptions=[StaleElementReferenceException]).until(
                condition)
        except TimeoutException:
            raise AssertionError("timed out waiting for %s; the page says: "
                                 "%s" % (what, self.text()[-1500:]))

    def all(self, test, within=None):
        from selenium.webdriver.common.by import By
        return (within or self.driver).find_elements(
            By.CSS_SELECTOR, '[data-test="%s"]' % test)

    def one(self, test, within=None):
        found = self.all(test, within)
        assert len(found) == 1, "%d elements %s" % (len(found), test)
        return found[0]

    def visible(self, test):
        return self.wait(lambda d: next((e for e in self.all(test)
                                         if e.is_displayed()), None),
                         "a visible %s" % test)

    def text(self):
        from selenium.webdriver.common.by import By
        try:
            return self.driver.find_element(By.TAG_NAME, "body").text
        except Exception:
            return ""

    def row(self, test, containing, timeout=WAIT):
        """The row element of kind test whose text contains containing."""
        return self.wait(lambda d: next((r for r in self.all(test)
                                         if containing in r.text), None),
                         "a %s with %r" % (test, containing), timeout)

    def click(self, test, row_test=None, containing=None):
        """Clicks the button test (in the row that contains containing):
        a table drawn again meanwhile is looked up again."""
        def attempt(_):
            scope = self.row(row_test, containing) if row_test else None
            buttons = [b for b in self.all(test, scope) if b.is_displayed()
                       and b.is_enabled()]
            if not buttons:
                return False
            buttons[0].click()
            return True
        self.wait(attempt, "button %s%s" % (
            test, " in the row with %r" % containing if containing else ""))

    def type(self, test, text):
        field = self.visible(test)
        field.clear()
        field.send_keys(text)

    def tab(self, name):
        self.click("tab-" + name)
        self.visible("view-" + name)

    # ---- the page -----------------------------------------------------------

    def sign_in(self, base, who, name=None):
        """Signs in with who's token (who: a principal of apitest, or a
        token the API made for principal name)."""
        self.driver.get(base + "/ui/")
        self.type("token", token(who))
        self.click("sign-in")
        name = name or who
        self.wait(lambda d: name in self.one("who").text,
                  "%s to be signed in" % name)
        # The event stream is open (the page follows it from now on).
        self.wait(lambda d: self.one("live").is_displayed(),
                  "the event stream")

    def storage(self):
        return self.driver.execute_script(
            "return [window.localStorage.length, "
            "window.sessionStorage.length, document.cookie]")

    def no_markup_ran(self):
        """No alert, no <img> in the page (markup shown as text would
        make neither)."""
        from selenium.common.exceptions import NoAlertPresentException
        from selenium.webdriver.common.by import By
        try:
            alert = self.driver.switch_to.alert
            raise AssertionError("an alert: %r" % alert.text)
        except NoAlertPresentException:
            pass
        imgs = self.driver.find_elements(By.TAG_NAME, "img")
        assert not imgs, "%d <img> elements in the page" % len(imgs)

    def console_errors(self):
        """Lines of the browser's console about the page's policy or a
        script error (the API's 4xx answers are expected and left out)."""
        self.log += self.driver.get_log("browser")
        return [e["message"] for e in self.log
                if "Content Security Policy" in e["message"] or
                "Uncaught" in e["message"]]

    def screenshot(self, name):
        os.makedirs(SCREENS, exist_ok=True)
        path = os.path.join(SCREENS, name + ".png")
        assert self.driver.save_screenshot(path), path
        print("screenshot: %s" % path)
        return path


def head(base, path, extra=None, cafile=None):
    """(status, headers dict, body) of GET path, not following redirects."""
    scheme, host_port = base.split("://")
    host, port = host_port.rsplit(":", 1)
    if scheme == "https":
        context = ssl.create_default_context(cafile=cafile)
        conn = http.client.HTTPSConnection(host, int(port), timeout=10,
                                           context=context)
    else:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers=extra or {})
        resp = conn.getresponse()
        body = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def check_page_headers(base, cafile=None):
    """The page, its files and the redirect: the headers, no token."""
    status, headers, _ = head(base, "/ui", cafile=cafile)
    assert status == 301 and headers["location"] == "/ui/", (status, headers)
    for name, value in PAGE_HEADERS.items():
        assert headers.get(name) == value, (name, headers)
    for path, ctype in (("/ui/", "text/html"),
                        ("/ui/app.js", "text/javascript"),
                        ("/ui/app.css", "text/css")):
        status, headers, body = head(base, path, cafile=cafile)
        assert status == 200, (path, status, body[:200])
        assert headers["content-type"].startswith(ctype), headers
        for name, value in PAGE_HEADERS.items():
            assert headers.get(name) == value, (path, name, headers)
        assert re.fullmatch(r'"[0-9a-f]{32}"', headers["etag"]), headers
        assert int(headers["content-length"]) == len(body) > 0
        # The browser's revalidation: 304, no body, the same ETag.
        again, headers304, body304 = head(
            base, path, {"If-None-Match": headers["etag"]}, cafile=cafile)
        assert again == 304 and body304 == b"", (path, again)
        assert headers304["etag"] == headers["etag"]
        assert headers304["content-security-policy"] == POLICY
    # Nothing but the page's files; the API still wants its token.
    assert head(base, "/ui/../v1/services", cafile=cafile)[0] in (400, 404)
    assert head(base, "/ui/nlb.cfg", cafile=cafile)[0] == 404
    assert head(base, "/v1/whoami", cafile=cafile)[0] == 401


def traffic(port, stop):
    """Flows through the load balancer until stop is set: one held open
    (an active flow) and a new short one every 50 ms, 4 KiB each way."""
    held = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        while not stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port),
                                              timeout=5) as s:
                    s.sendall(b"x" * 4096)
                    got = 0
                    while got < 4096:
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        got += len(chunk)
            except OSError:
                pass
            stop.wait(0.05)
    finally:
        held.close()


def start_traffic(port):
    stop = threading.Event()
    thread = threading.Thread(target=traffic, args=(port, stop), daemon=True)
    thread.start()
    return stop


def wait_chart(browser):
    """The flow charts of the traffic tab: each with a line drawn, and
    the flows of traffic() counted (flows open, new ones, bytes)."""
    from selenium.webdriver.common.by import By
    browser.tab("traffic")
    charts = browser.visible("chart-flows")

    def drawn(_):
        boxes = [browser.one(t, charts) for t in ("chart-active", "chart-new",
                                                  "chart-bytes")]
        return all(b.find_elements(By.CSS_SELECTOR, "svg polyline") and
                   float(b.get_attribute("data-now")) > 0 for b in boxes)
    browser.wait(drawn, "the flows in each chart", timeout=60)
    return charts


def state_of(api, who, endpoint):
    return api.ok("GET", "/v1/endpoints/" + endpoint, who)["state"]


# ---- the tests -----------------------------------------------------------


def test_page_headers_plain_and_tls():
    """/ui and its files, with the page's headers, an ETag and 304, for
    anyone; the same over TLS, where the page works too (HTTP/2)."""
    with NlbdApi() as api:
        check_page_headers(api.base)
    with NlbdApi(tls=True) as api:
        check_page_headers(api.base, cafile=api.cert)
        with Browser(insecure=True) as browser:
            browser.sign_in(api.base, "payments")
            proto = browser.driver.execute_script(
                "return performance.getEntriesByType('navigation')[0]"
                ".nextHopProtocol")
            assert proto == "h2", proto
            # Another principal in the same browser: nlbd answers 421 on
            # the connection bound to the first, which HTTP/2 keeps, so
            # the page either gets in or says why (never a bare error).
            browser.click("sign-out")
            browser.type("token", token("shop"))
            browser.click("sign-in")
            browser.wait(lambda d: "shop" in browser.one("who").text or
                         "still connected" in browser.one(
                             "sign-in-error").text, "shop, or why not")
            assert browser.console_errors() == []


def test_provider_accepts_and_rejects():
    with NlbdApi() as api, Browser() as browser:
        browser.sign_in(api.base, "payments")
        assert browser.storage() == [0, 1, ""], browser.storage()
        assert browser.driver.get_cookies() == []
        # A service, made and edited through the page.
        browser.type("new-service-name", "web")
        browser.type("new-service-lb", "payments-lb")
        browser.type("new-service-principals", "shop")
        browser.click("create-service")
        browser.row("service-row", "web")
        service = api.ok("GET", "/v1/services/web", "payments")
        assert service["allowed_principals"] == ["shop"], service
        assert service["acceptance_required"] is True
        browser.click("edit-service", "service-row", "web")
        browser.type("permissions-add", "blog")
        browser.type("edit-limit", "5")
        browser.click("save-service")
        wait_until(lambda: api.ok("GET", "/v1/services/web", "payments")[
            "connection_limit"] == 5, timeout=WAIT, what="the edit")
        assert api.ok("GET", "/v1/services/web/permissions", "payments") == {
            "allowed_principals": ["blog", "shop"]}
        browser.row("service-row", "blog, shop")
        # Requests made elsewhere appear, without a reload of the page.
        browser.driver.execute_script("window.nlbTestMark = 42")
        eps = [api.ok("POST", "/v1/endpoints", who,
                      {"service": "web", "network": "host"},
                      status=201)["id"] for who in ("shop", "blog")]
        for ep in eps:
            browser.row("connection-row", ep)
        assert browser.driver.execute_script(
            "return window.nlbTestMark") == 42, "the page was reloaded"
        browser.click("accept", "connection-row", eps[0])
        browser.click("reject", "connection-row", eps[1])
        wait_until(lambda: state_of(api, "shop", eps[0]) == "available",
                   timeout=WAIT, what="the accept")
        wait_until(lambda: state_of(api, "blog", eps[1]) == "rejected",
                   timeout=WAIT, what="the reject")
        browser.wait(lambda d: browser.row("connection-row", eps[1])
                     .get_attribute("data-state") == "rejected",
                     "the rejected row")
        # Two more at once: select all the pending ones, accept them.
        more = [api.ok("POST", "/v1/endpoints", "shop",
                       {"service": "web", "network": "host"},
                       status=201)["id"] for _ in range(2)]
        for ep in more:
            browser.row("connection-row", ep)
        browser.click("select-all")
        browser.click("accept-selected")
        wait_until(lambda: all(state_of(api, "shop", ep) == "available"
                               for ep in more), timeout=WAIT,
                   what="the batch accept")
        assert state_of(api, "blog", eps[1]) == "rejected"
        browser.wait(lambda d: all(
            browser.row("connection-row", ep).get_attribute("data-state") ==
            "available" for ep in more), "the accepted rows")
        browser.screenshot("provider")
        # Its listeners' flows (a provider may read /metrics).
        stop = start_traffic(api.lb_port)
        try:
            wait_chart(browser)
            browser.screenshot("provider-traffic")
        finally:
            stop.set()
        assert browser.console_errors() == []
        assert browser.storage()[0] == 0
        browser.click("sign-out")
        browser.visible("token")
        assert browser.storage() == [0, 0, ""], browser.storage()


def test_consumer_creates_and_deletes():
    with NlbdApi() as api, Browser() as browser:
        api.ok("POST", "/v1/services", "payments",
               {"name": "web", "load_balancer": "payments-lb",
                "allowed_principals": ["shop"]}, status=201)
        # A token the API does not know: refused, nothing kept.
        browser.driver.get(api.base + "/ui/")
        browser.type("token", "not-a-token")
        browser.click("sign-in")
        browser.wait(lambda d: "not known" in browser.one(
            "sign-in-error").text, "the refusal")
        assert browser.storage() == [0, 0, ""]
        browser.sign_in(api.base, "shop")
        assert browser.storage() == [0, 1, ""]
        browser.row("service-row", "web")
        browser.click("connect", "service-row", "web")
        browser.visible("view-endpoints")
        browser.wait(lambda d: browser.one("endpoint-service")
                     .get_attribute("value") == "web", "the service chosen")
        browser.type("endpoint-network", "host")
        browser.click("create-endpoint")
        row = browser.row("endpoint-row", "pendingAcceptance")
        ep = row.get_attribute("data-id")
        assert api.ok("GET", "/v1/endpoints/" + ep, "shop")["state"] == \
            "pendingAcceptance"
        # The provider accepts: the row follows, with its address.
        api.ok("POST", "/v1/services/web/connections/accept", "payments",
               {"endpoint_ids": [ep]})
        address = api.ok("GET", "/v1/endpoints/" + ep, "shop")["address"]
        browser.wait(lambda d: browser.row("endpoint-row", ep).get_attribute(
            "data-state") == "available", "the endpoint available")
        assert address in browser.row("endpoint-row", ep).text
        browser.screenshot("consumer")
        browser.click("delete-endpoint", "endpoint-row", ep)
        wait_until(lambda: state_of(api, "shop", ep) == "deleted",
                   timeout=WAIT, what="the delete")
        browser.wait(lambda d: not [r for r in browser.all("endpoint-row")
                                    if ep in r.text], "the row gone")
        # A consumer gets no charts: /metrics is not its to read.
        assert not browser.all("tab-traffic")
        assert browser.console_errors() == []


def test_operator_targets_nodes_tokens_events():
    with NlbdApi() as api, Browser() as browser:
        dead = "127.0.0.1:%d" % free_port()
        api.ok("POST", "/v1/target-groups/payments-tg/targets", "ops",
               {"address": dead}, status=201)
        browser.sign_in(api.base, "ops")
        assert browser.storage() == [0, 1, ""]
        # Services of every provider, in a service-row each.
        api.ok("POST", "/v1/services", "search",
               {"name": "search", "load_balancer": "search-lb"}, status=201)
        browser.row("service-row", "search")
        browser.tab("targets")
        live = "127.0.0.1:%d" % api.backend.port
        browser.wait(lambda d: browser.row("target-row", live)
                     .get_attribute("data-state") == "healthy",
                     "the live target healthy")
        browser.wait(lambda d: browser.row("target-row", dead)
                     .get_attribute("data-state") == "unhealthy",
                     "the dead target unhealthy")
        reason = browser.one("reason", browser.row("target-row", dead)).text
        assert reason, "no reason for the unhealthy target"
        browser.screenshot("operator-targets")
        browser.tab("nodes")
        node = api.ok("GET", "/v1/nodes", "ops")["nodes"][0]
        row = browser.row("node-row", node["name"])
        assert row.get_attribute("data-state") == "up"
        assert int(browser.one("applied-seq", row).text) >= 0
        browser.screenshot("operator-nodes")
        # A principal and its tokens, each shown once.
        browser.tab("tenancy")
        browser.type("new-principal-name", "acme")
        browser.click("create-principal")
        first = browser.visible("new-token-value").text
        assert re.fullmatch(r"nlb_[A-Za-z0-9_-]{43}", first), first
        browser.screenshot("operator-token")
        browser.click("dialog-close")
        browser.wait(lambda d: not browser.all("new-token-value"),
                     "the token gone from the page")
        assert first not in browser.driver.page_source
        assert api.ok("GET", "/v1/whoami", first) == {"name": "acme",
                                                      "role": "consumer"}
        browser.click("new-token", "principal-row", "acme")
        second = browser.visible("new-token-value").text
        assert second != first and re.fullmatch(r"nlb_[A-Za-z0-9_-]{43}",
                                                second)
        browser.click("dialog-close")
        assert api.ok("GET", "/v1/whoami", second)["name"] == "acme"
        assert len(api.ok("GET", "/v1/principals/acme/tokens",
                          "ops")["tokens"]) == 2
        # The events of all that, newest first.
        browser.tab("events")
        browser.row("event-row", "token_create")
        browser.row("event-row", "principal_create")
        browser.screenshot("operator-events")
        stop = start_traffic(api.lb_port)
        try:
            charts = wait_chart(browser)
            assert "payments-lb" in charts.text, charts.text
            browser.screenshot("operator-traffic")
        finally:
            stop.set()
        browser.tab("services")
        browser.screenshot("operator")
        assert browser.console_errors() == []
        # A token revoked while its page is open: the page signs out.
        browser.click("sign-out")
        browser.sign_in(api.base, second, name="acme")
        assert [t.text for t in browser.all("tab-available")] == ["Services"]
        api.ok("DELETE", "/v1/principals/acme", "ops")
        browser.wait(lambda d: "no longer accepted" in browser.one(
            "sign-in-error").text, "the page to sign out")
        browser.visible("token")
        assert browser.storage() == [0, 0, ""], browser.storage()


def test_markup_is_shown_as_text():
    """Markup that reaches the page is shown as text. nlbd's names are
    tame, but its error messages quote what was sent: a network namespace
    named with markup, typed into the page, comes back in the refusal."""
    with NlbdApi() as api, Browser() as browser:
        browser.sign_in(api.base, "ops")
        browser.tab("tenancy")
        browser.type("new-network-name", "odd-net")
        browser.type("new-network-range", "127.79.0.0/29")
        browser.type("new-network-netns", MARKUP)
        browser.click("create-network")
        message = browser.wait(lambda d: MARKUP in browser.one(
            "message").text and browser.one("message"), "the refusal")
        assert "400 InvalidValue" in message.text, message.text
        browser.no_markup_ran()
        assert "odd-net" not in str(api.ok("GET", "/v1/networks", "ops"))
        assert browser.console_errors() == []


# ---- every field, from a stand-in API ------------------------------------

UI_DIR = os.path.join(TOP_SRCDIR, "api", "ui")


def markup_answers(role):
    """What a stand-in API answers each role: markup in every string the
    page shows, the shapes of docs/api.md."""
    m = MARKUP
    t = "2024-05-14T09:12:01.337Z"
    service = {"id": "svc-0123456789abcdef0", "name": m, "owner": m,
               "load_balancer": m, "ports": [8080], "state": "available",
               "acceptance_required": True, "allowed_principals": [m],
               "connection_limit": 0, "created_at": t,
               "private_dns_name": m}
    endpoint = {"id": "ep-0123456789abcdef0", "service_id": service["id"],
                "service": m, "consumer": m, "network": m, "address": m,
                "ports": [8080], "state": "failed", "reason": m,
                "allowed_sources": [], "placements": [
                    {"node": m, "state": "failed", "reason": m + "!"}],
                "created_at": t, "updated_at": t, "private_dns": True,
                "dns_names": [m]}
    return {
        "/v1/whoami": {"name": m, "role": role},
        "/v1/services": {"services": [service]},
        "/v1/services/svc-0123456789abcdef0/connections": {"connections": [
            {"endpoint_id": endpoint["id"], "consumer": m, "state":
             "pendingAcceptance", "network": m, "address": m,
             "created_at": t, "updated_at": t}]},
        "/v1/available-services": {"services": [
            {"id": service["id"], "name": m, "owner": m, "ports": [8080],
             "acceptance_required": True, "private_dns_name": m}]},
        "/v1/endpoints": {"endpoints": [endpoint]},
        "/v1/target-groups": {"target_groups": [{"name": m, "targets": [
            {"address": m, "weight": 1, "state": "unhealthy",
             "reason": m}]}]},
        "/v1/nodes": {"nodes": [{"name": m, "state": "up", "last_seen": t,
                                 "applied_seq": 3, "version": m,
                                 "networks": [{"network": m,
                                               "netns": m}]}]},
        "/v1/principals": {"principals": [
            {"name": m, "role": "consumer", "source": "api",
             "created_at": t}]},
        "/v1/networks": {"networks": [
            {"name": m, "range": m, "netns": m, "principals": [m],
             "source": "api", "created_at": t}]},
    }


class MarkupApi:
    """A stand-in for nlbd's API on loopback: the console's files from the
    source tree with the page's headers, and answers full of markup
    (markup_answers); an event stream with one event, then silence; a
    /metrics whose labels are markup too."""

    def __init__(self):
        import http.server
        outer = self
        self.stop_streams = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def send(self, status, ctype, body, headers=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?")[0]
                types = {"index.html": "text/html",
                         "app.js": "text/javascript", "app.css": "text/css"}
                if path.startswith("/ui/"):
                    name = path[4:] or "index.html"
                    if name not in types:
                        self.send(404, "text/plain", b"no such file\n")
                        return
                    ctype = types[name]
                    with open(os.path.join(UI_DIR, name), "rb") as f:
                        self.send(200, ctype, f.read(), [
                            ("Content-Security-Policy", POLICY)])
                    return
                role = {"Bearer op": "operator", "Bearer prov": "provider",
                        "Bearer cons": "consumer"}.get(
                    self.headers.get("Authorization"))
                if role is None:
                    self.send(401, "application/json",
                              b'{"error":{"code":"Unauthorized",'
                              b'"message":"x"}}')
                    return
                if path == "/v1/events":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/x-ndjson")
                    self.end_headers()
                    self.wfile.write((json.dumps(
                        {"seq": 7, "time": "2024-05-14T09:12:01.337Z",
                         "type": "connect", "service_id": MARKUP,
                         "endpoint_id": MARKUP, "principal": MARKUP,
                         "state": "pendingAcceptance"}) + "\n").encode())
                    self.wfile.flush()
                    outer.stop_streams.wait(WAIT * 4)
                    return
                if path == "/metrics":
                    labels = 'lb="%s",listener="80"' % MARKUP
                    self.send(200, "text/plain", "".join(
                        "%s{%s} %d\n" % (name, labels, value) for name, value
                        in (("nlb_active_flows", 1),
                            ("nlb_new_flows_total", time.monotonic() * 10),
                            ("nlb_processed_bytes_total",
                             time.monotonic() * 1000))).encode())
                    return
                body = markup_answers(role).get(path)
                if body is None:
                    self.send(404, "application/json",
                              b'{"error":{"code":"NotFound","message":"x"}}')
                    return
                self.send(200, "application/json", json.dumps(body).encode())

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        self.base = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()
        nlbtest._track(self)

    def stop(self):
        nlbtest._untrack(self)
        self.stop_streams.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def test_markup_in_every_field_is_text():
    """Every view of every role, over answers whose every string is
    markup: each shows it as text, no element comes of it, no script runs,
    and the page breaks no rule of its policy."""
    with MarkupApi() as api, Browser() as browser:
        from selenium.webdriver.common.by import By
        for who, role in (("op", "operator"), ("prov", "provider"),
                          ("cons", "consumer")):
            browser.driver.get(api.base + "/ui/")
            browser.type("token", who)
            browser.click("sign-in")
            browser.wait(lambda d: MARKUP in browser.one("who").text and
                         role in browser.one("who").text, "the name")
            tabs = [t.get_attribute("data-test")[len("tab-"):]
                    for t in browser.driver.find_elements(
                        By.CSS_SELECTOR, '#tabs [data-test^="tab-"]')]
            assert len(tabs) >= 3, tabs
            for tab in tabs:
                browser.tab(tab)
                view = browser.visible("view-" + tab)
                browser.wait(lambda d: view.text.count(MARKUP) >= (
                    1 if tab in ("traffic", "events") else 2),
                    "markup shown as text in %s of %s" % (tab, role))
                browser.no_markup_ran()
            browser.screenshot("markup-" + role)
            browser.click("sign-out")
        assert browser.console_errors() == []


if __name__ == "__main__":
    nlbtest.run([
        test_page_headers_plain_and_tls,
        test_provider_accepts_and_rejects,
        test_consumer_creates_and_deletes,
        test_operator_targets_nodes_tokens_events,
        test_markup_is_shown_as_text,
        test_markup_in_every_field_is_text,
    ], timeout=240)
