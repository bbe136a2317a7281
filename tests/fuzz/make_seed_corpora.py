"""Writes the seed corpora of the config, proxy_v2, api, http1 and h2 fuzz
targets into corpus/<target>/: a few dozen meaningful inputs each, every
kind of thing the target tells apart, well-formed or not. Run it again after
changing the lists; the files are checked in (with what the fuzzers found
worth keeping, such as reproducers, added by hand beside them)."""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

# ---- config ---------------------------------------------------------------

FULL = """workers = 2;
worker_cpu_affinity = "off";
shutdown_timeout = "30s";
log = { access = "stderr"; access_format = "json"; events = "stderr";
        level = "warn"; };
api = { listen = "127.0.0.1:9180"; };
registry = { path = "/tmp/nlb-fuzz.db"; pending_expiry = "7d";
             event_retention = "1h"; endpoint_retention = 86400;
             service_quota = 100; };
node = { name = "n1"; networks = ( { name = "vpc9"; netns = "vpc9-here"; } ); };
principals = (
  { name = "ops"; role = "operator"; token_sha256 = "%s"; },
  { name = "shop"; role = "consumer"; token_sha256 = "%s"; }
);
networks = (
  { name = "host"; range = "127.77.0.0/16"; },
  { name = "vpc"; netns = "shop"; range = "fd00::/64"; principals = [ "shop" ]; }
);
target_groups = (
  { name = "tg"; algorithm = "least_conn"; proxy_protocol = "v2";
    deregistration_delay = "300s"; fail_open = false; slow_start = 30;
    connect_timeout = 0.5; connect_retries = 3;
    health_check = { protocol = "http"; port = 8081; interval = "10s";
                     timeout = "250ms"; healthy_threshold = 3;
                     unhealthy_threshold = 2; path = "/health";
                     matcher = "200-399"; host = "example"; };
    targets = ( { address = "127.0.0.1:9001"; weight = 1; },
                { address = "[::1]:9002"; weight = 7; } ); },
  { name = "tg2"; algorithm = "maglev"; targets = (); }
);
load_balancers = (
  { name = "lb"; listeners = (
      { port = 8080; target_group = "tg"; bind = "127.0.0.1";
        idle_timeout = "350s"; },
      { port = 8443; target_group = "tg2"; } ); }
);
""" % (HASH, HASH)

TG = 'target_groups = ( { name = "tg"; %s } );\n'
LISTENER = ('target_groups = ( { name = "tg"; } );\n'
            'load_balancers = ( { name = "lb"; listeners = (\n'
            '  { port = %s; target_group = "tg"; %s } ); } );\n')

CONFIG = {
    "full": FULL,
    "empty": "",
    "comments": "# nothing\n// here\n/* at\n all */\n",
    "minimal": TG % 'targets = ( { address = "127.0.0.1:80"; } );',
    "durations-every-form": (
        'shutdown_timeout = 5;\n' + TG % (
            'deregistration_delay = "250ms"; slow_start = "5m"; '
            'connect_timeout = 0.25; health_check = { interval = "1h"; '
            'timeout = 5L; };')),
    "duration-float-overflow": TG % 'deregistration_delay = 1e19;',
    "duration-int64-overflow": TG % (
        'health_check = { interval = 18446744073709552L; };'),
    "duration-inf": 'shutdown_timeout = 1e999;\n',
    "duration-negative": 'shutdown_timeout = -0.5;\n',
    "duration-string-huge": 'shutdown_timeout = "99999999999999999999d";\n',
    "duration-string-junk": 'shutdown_timeout = "10 seconds";\n',
    "duration-string-tiny": 'shutdown_timeout = "0.0000001ms";\n',
    "int-wrap-32": LISTENER % ("4294967376", ""),
    "int-wrap-hex": 'workers = 0xFFFFFFFF;\n',
    "int-saturate-64": 'workers = 99999999999999999999L;\n',
    "int-negative": 'workers = -1;\n',
    "int-as-float": 'workers = 2.0;\n',
    "port-range": LISTENER % ("70000", ""),
    "bind-bad": LISTENER % ("80", 'bind = "localhost";'),
    "idle-timeout-bad": LISTENER % ("80", 'idle_timeout = "500ms";'),
    "unknown-key": 'workers = 1;\nwrokers = 2;\n',
    "unknown-group": 'log = { colour = "red"; };\n',
    "wrong-types": ('workers = "two";\nlog = 5;\napi = ( 1, 2 );\n'
                    'target_groups = { name = "tg"; };\n'),
    "syntax-error": 'workers = = 1;\n',
    "unterminated-string": 'log = { access = "stderr; };\n',
    "duplicate-names": ('target_groups = ( { name = "tg"; }, '
                        '{ name = "tg"; } );\n'),
    "bad-names": TG.replace('"tg"', '"bad name!"') % "",
    "bad-target": TG % 'targets = ( { address = "127.0.0.1"; weight = 1001; } );',
    "duplicate-target": TG % ('targets = ( { address = "127.0.0.1:1"; }, '
                              '{ address = "127.0.0.1:1"; } );'),
    "health-bad": TG % ('health_check = { protocol = "udp"; path = "x y"; '
                        'matcher = "99-1000"; interval = "1s"; '
                        'timeout = "2s"; host = ""; };'),
    "algorithm-bad": TG % 'algorithm = "fast"; proxy_protocol = "v3";',
    "api-no-registry": 'api = { listen = "127.0.0.1:9180"; };\n',
    "api-public-no-tls": ('api = { listen = "0.0.0.0:9180"; };\n'
                          'registry = { path = "r.db"; };\n'),
    "api-tls-half": ('api = { tls = { cert = "c.pem"; }; };\n'
                     'registry = { postgresql = "host=/tmp"; };\n'),
    "registry-both": 'registry = { path = "a"; postgresql = "b"; };\n',
    "principals-bad": ('principals = ( { name = "p"; role = "king"; '
                       'token_sha256 = "abc"; }, { role = "operator"; } );\n'),
    "networks-bad": ('networks = ( { name = "n"; range = "10.0.0.1/24"; '
                     'netns = ".."; principals = [ "nobody", 5 ]; } );\n'),
    "listeners-clash": (
        'target_groups = ( { name = "tg"; } );\n'
        'load_balancers = (\n'
        ' { name = "a"; listeners = ( { port = 80; target_group = "tg"; '
        'bind = "127.0.0.1"; } ); },\n'
        ' { name = "b"; listeners = ( { port = 80; target_group = "tg"; '
        'bind = "127.0.0.1"; } ); } );\n'),
    "arrays-and-lists": ('networks = [ { name = "a"; range = "10.0.0.0/8"; } ];'
                         '\nx = [ 1, 2L, 0x10, 1.5e3, "s", true ];\n'),
    "escapes": 'log = { access = "a\\"b\\\\c\\x41\\n"; };\n',
    "worker-affinity": 'worker_cpu_affinity = "sometimes";\nworkers = 257;\n',
}

# ---- proxy_v2 -------------------------------------------------------------


def proxy(flags, cap, src, dst, sport, dport, endpoint=b""):
    src = src.ljust(16, b"\0")
    dst = dst.ljust(16, b"\0")
    return (bytes([flags, cap]) + src + dst + struct.pack("!HH", sport, dport)
            + endpoint)


V4A, V4B = bytes([10, 0, 0, 5]), bytes([192, 168, 1, 9])
V6A = bytes.fromhex("fd000000000000000000000000000005")
V6B = bytes.fromhex("20010db8000000000000000000000001")
V6LOOP = bytes(15) + b"\1"

PROXY = {
    "v4": proxy(0, 255, V4A, V4B, 40000, 8080),
    "v4-endpoint": proxy(8, 255, V4A, V4B, 1, 443, b"ep-0123456789abcdef0"),
    "v6": proxy(3, 255, V6A, V6B, 40000, 8080),
    "v6-endpoint": proxy(11, 255, V6A, V6LOOP, 65535, 0, b"vpce-1a2b3c"),
    "mixed-v4-v6": proxy(2, 255, V4A, V6B, 1234, 80),
    "mixed-v6-v4": proxy(1, 255, V6A, V4B, 1234, 80),
    "mapped-v4": proxy(5, 255, V6A[12:] + V4A, V4B, 5, 6),
    "mapped-both": proxy(7, 255, V4A, bytes(10) + b"\xff\xff" + V4B, 5, 6),
    "id-max": proxy(8, 255, V4A, V4B, 1, 2, b"a" * 64),
    "id-too-long": proxy(8, 255, V4A, V4B, 1, 2, b"a" * 65),
    "id-bad-char": proxy(8, 255, V4A, V4B, 1, 2, b"ep_1"),
    "id-empty": proxy(8, 255, V4A, V4B, 1, 2, b""),
    "id-nul": proxy(8, 255, V4A, V4B, 1, 2, b"ep\0x"),
    "cap-exact-v4": proxy(0, 28, V4A, V4B, 1, 2),
    "cap-short-v4": proxy(0, 27, V4A, V4B, 1, 2),
    "cap-exact-v6": proxy(3, 52, V6A, V6B, 1, 2),
    "cap-short-v6-id": proxy(11, 60, V6A, V6B, 1, 2, b"ep-1234"),
    "cap-local-only": proxy(0, 16, V4A, V4B, 1, 2),
    "cap-zero": proxy(0, 0, V4A, V4B, 1, 2),
    "family-unsupported": proxy(16, 255, V4A, V4B, 1, 2),
    "null-src": proxy(32, 255, V4A, V4B, 1, 2),
    "all-flags": proxy(63, 255, V6A, V6B, 1, 2, b"x"),
}

# ---- api ------------------------------------------------------------------


def api(*requests):
    return "\n%%\n".join(requests)


SVC = ('POST /v1/services prov\n{"name":"web","load_balancer":"web-lb",'
       '"allowed_principals":["shop","shop2"]}')
SVC_OPEN = ('POST /v1/services prov\n{"name":"open","load_balancer":"db-lb",'
            '"acceptance_required":false,"allowed_principals":["*"],'
            '"connection_limit":1}')
EP = 'POST /v1/endpoints shop\n{"service":"web","network":"shop-vpc"}'
EP2 = 'POST /v1/endpoints shop2\n{"service":"web","network":"tiny"}'

API = {
    "healthz": "GET /healthz",
    "healthz-head": "HEAD /healthz -",
    "metrics": "GET /metrics ops",
    "metrics-consumer": "GET /metrics shop",
    "no-token": "GET /v1/services",
    "bad-token": "GET /v1/services Bearer nope",
    "bad-scheme": "GET /v1/services Basic b3BzOm9wcw==",
    "service-create": SVC,
    "service-create-bad-json": 'POST /v1/services prov\n{"name":"web",',
    "service-create-dup-key": ('POST /v1/services prov\n'
                               '{"name":"a","name":"b","load_balancer":"web-lb"}'),
    "service-create-unknown-field": ('POST /v1/services prov\n{"name":"a",'
                                     '"load_balancer":"web-lb","colour":1}'),
    "service-create-wrong-types": ('POST /v1/services prov\n{"name":5,'
                                   '"load_balancer":null,'
                                   '"connection_limit":1.0}'),
    "service-create-consumer": 'POST /v1/services shop\n{"name":"x"}',
    "service-lifecycle": api(SVC, "GET /v1/services/$s prov",
                             'PATCH /v1/services/$s prov\n'
                             '{"acceptance_required":false,'
                             '"connection_limit":5}',
                             "GET /v1/services?limit=1 prov",
                             "DELETE /v1/services/$s prov",
                             "GET /v1/services/$s prov"),
    "service-other-provider": api(SVC, "GET /v1/services/$s prov2",
                                  "DELETE /v1/services/$s prov2"),
    "permissions": api(SVC, "GET /v1/services/$s/permissions prov",
                       'PATCH /v1/services/$s/permissions prov\n'
                       '{"add":["shop2","ghost"],"remove":["shop"],'
                       '"reject_endpoints":true}'),
    "endpoint-accept": api(SVC, EP, "GET /v1/services/$s/connections prov",
                           'POST /v1/services/$s/connections/accept prov\n'
                           '{"endpoint_ids":["$e","ep-00000000000000000"]}',
                           "GET /v1/endpoints/$e shop",
                           "GET /v1/endpoints/$e shop2"),
    "endpoint-reject": api(SVC, EP, EP2,
                           'POST /v1/services/$s/connections/reject prov\n'
                           '{"endpoint_ids":["$E","$e"]}',
                           "DELETE /v1/endpoints/$e shop2",
                           "GET /v1/endpoints?state=rejected shop"),
    "endpoint-modify": api(SVC_OPEN, 'POST /v1/endpoints shop\n'
                           '{"service":"open","network":"any6",'
                           '"address":"fd00:88::10",'
                           '"allowed_sources":["10.0.0.0/8","::1"]}',
                           'PATCH /v1/endpoints/$e shop\n'
                           '{"allowed_sources":["bad"]}',
                           'PATCH /v1/endpoints/$e shop\n'
                           '{"allowed_sources":[]}',
                           'POST /v1/endpoints shop\n'
                           '{"service":"open","network":"any6"}'),
    "endpoint-exhaust": api(SVC_OPEN.replace('"connection_limit":1',
                                             '"connection_limit":0'),
                            *(['POST /v1/endpoints shop2\n'
                               '{"service":"open","network":"tiny"}'] * 4)),
    "endpoint-address-taken": api(SVC_OPEN, 'POST /v1/endpoints shop\n'
                                  '{"service":"open","network":"any6",'
                                  '"address":"fd00:88::7"}',
                                  'POST /v1/endpoints shop2\n'
                                  '{"service":"open","network":"any6",'
                                  '"address":"fd00:88::7"}'),
    "available-services": api(SVC, SVC_OPEN, "GET /v1/available-services shop",
                              "GET /v1/available-services shop2",
                              "GET /v1/available-services?limit=1&"
                              "next_token=x ops"),
    "lists-paging": api(SVC, SVC_OPEN, "GET /v1/services?limit=1 ops",
                        "GET /v1/services?limit=0&limit=2 ops",
                        "GET /v1/services?next_token=%zz ops",
                        "GET /v1/endpoints?state=bogus shop",
                        "GET /v1/services?limit=99999 prov"),
    "events": api(SVC, EP, "GET /v1/events?after=0 shop",
                  "GET /v1/events?after=0 shop2", "GET /v1/events prov",
                  "GET /v1/events?after=x ops",
                  "GET /v1/events?after=99 ops"),
    "target-groups": api("GET /v1/target-groups ops",
                         "GET /v1/target-groups/web-tg ops",
                         "GET /v1/target-groups/nope ops",
                         'POST /v1/target-groups/web-tg/targets ops\n'
                         '{"address":"127.0.0.1:9100","weight":3}',
                         'POST /v1/target-groups/db-tg/targets ops\n'
                         '{"address":"[::1]:80"}',
                         "DELETE /v1/target-groups/web-tg/targets/"
                         "127.0.0.1%3A9100 ops",
                         "DELETE /v1/target-groups/db-tg/targets/"
                         "%5B%3A%3A1%5D%3A80 ops",
                         "GET /v1/events ops"),
    "target-register-bad": api('POST /v1/target-groups/web-tg/targets ops\n'
                               '{"address":"nowhere","weight":-1}',
                               'POST /v1/target-groups/web-tg/targets prov\n'
                               '{"address":"127.0.0.1:1"}'),
    "nodes": api("GET /v1/nodes ops", "POST /v1/nodes/fuzz/drain ops",
                 "POST /v1/nodes/ghost/drain ops", "GET /v1/nodes prov"),
    "method-not-allowed": api("PUT /v1/services ops", "DELETE /healthz -",
                              "PATCH /v1/available-services shop"),
    "paths-odd": api("GET / ops", "GET //v1//services ops",
                     "GET /v1/services/%2F ops", "GET /v1/services/%00 ops",
                     "GET /v1/services/a%2 ops", "GET v1/services ops",
                     "GET /v1/services/" + "a" * 300 + " ops",
                     "GET /v1/services/x/y/z/w ops"),
    "query-odd": api("GET /v1/services?&&=&limit ops",
                     "GET /v1/services?limit=1+1 ops",
                     "GET /v1/services?limit=%31 ops",
                     "GET /v1/endpoints?state=available&state=rejected ops"),
    "body-odd": api('POST /v1/services prov\n[1,2]',
                    'POST /v1/services prov\n"text"',
                    'POST /v1/services prov\n{"name":"a"} trailing',
                    'POST /v1/services prov\n{"name":"\\u0000",'
                    '"load_balancer":"web-lb"}',
                    'POST /v1/services prov\n{"name":"svc-x",'
                    '"load_balancer":"web-lb"}',
                    'POST /v1/services prov\n{"name":"' + "n" * 70 +
                    '","load_balancer":"nope"}',
                    'POST /v1/services prov\n'),
    "tenancy": api('POST /v1/principals ops\n{"name":"team","role":"consumer"}',
                   "GET /v1/endpoints token",
                   'POST /v1/networks ops\n{"name":"team-vpc",'
                   '"range":"10.9.0.0/29","principals":["team"]}',
                   SVC_OPEN, 'POST /v1/endpoints token\n'
                   '{"service":"open","network":"team-vpc"}',
                   "GET /v1/events?after=0 token",
                   "GET /v1/principals?limit=2 ops",
                   "GET /v1/networks ops"),
    "tokens": api('POST /v1/principals ops\n{"name":"team","role":"provider"}',
                  'POST /v1/principals/team/tokens ops\n'
                  '{"expires_at":"2030-01-02T03:04:05.678+01:00"}',
                  "GET /v1/services token",
                  "GET /v1/principals/team/tokens ops",
                  "DELETE /v1/principals/team/tokens/$k ops",
                  "GET /v1/services token",
                  'POST /v1/principals/team/tokens ops\n'
                  '{"expires_at":"2001-01-01T00:00:00Z"}',
                  'POST /v1/principals/team/tokens ops\n'
                  '{"expires_at":"tomorrow"}',
                  "POST /v1/principals/team/tokens ops",
                  "DELETE /v1/principals/team ops",
                  "GET /v1/services token"),
    "tenancy-bad": api('POST /v1/principals ops\n{"name":"ops","role":"king"}',
                       'POST /v1/principals prov\n{"name":"x",'
                       '"role":"consumer"}',
                       'POST /v1/networks ops\n{"name":"n","range":'
                       '"10.0.0.1/24","netns":"..","principals":["ghost"]}',
                       "DELETE /v1/principals/ops ops",
                       "DELETE /v1/networks/shop-vpc ops",
                       "DELETE /v1/principals/nobody/tokens/tok-1 ops",
                       "GET /v1/openapi.yaml -"),
    "private-dns": api('POST /v1/services prov\n{"name":"pay",'
                       '"load_balancer":"web-lb","acceptance_required":false,'
                       '"allowed_principals":["*"],'
                       '"private_dns_name":"api.payments.example"}',
                       'POST /v1/endpoints shop\n'
                       '{"service":"pay","network":"shop-vpc"}',
                       "GET /v1/endpoints/$e shop",
                       'PATCH /v1/services/$s prov\n'
                       '{"private_dns_name":"*.payments.example"}',
                       'POST /v1/services prov2\n{"name":"x",'
                       '"load_balancer":"web-lb",'
                       '"private_dns_name":"api.payments.example"}',
                       'POST /v1/services prov\n{"name":"y",'
                       '"load_balancer":"web-lb",'
                       '"private_dns_name":"x.nlb.internal"}',
                       "GET /v1/available-services shop"),
    "delete-busy-service": api(SVC, EP, "DELETE /v1/services/$s prov",
                               "DELETE /v1/endpoints/$e ops",
                               "DELETE /v1/services/$s ops"),
}

# ---- http1 ----------------------------------------------------------------


def req(method, path, who=None, body=None, extra=(), version="1.1",
        host=True):
    lines = ["%s %s HTTP/%s" % (method, path, version)]
    if host:
        lines.append("Host: api")
    if who:
        lines.append("Authorization: Bearer %s-token" % who)
    lines.extend(extra)
    if body is not None:
        lines.append("Content-Length: %d" % len(body.encode()))
    return ("\r\n".join(lines) + "\r\n\r\n" + (body or "")).encode()


def chunked(method, path, who, pieces, extra=()):
    head = req(method, path, who, extra=("Transfer-Encoding: chunked",)
               + tuple(extra))
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces)
    return head + body + b"0\r\n\r\n"


SVC_BODY = ('{"name":"web","load_balancer":"web-lb",'
            '"allowed_principals":["shop"]}')

HTTP1 = {
    "get-healthz": req("GET", "/healthz"),
    "head-healthz": req("HEAD", "/healthz"),
    "http10": req("GET", "/healthz", version="1.0", host=False),
    "http10-keepalive": req("GET", "/healthz", version="1.0", host=False,
                            extra=("Connection: keep-alive",)) * 2,
    "pipelined": req("GET", "/healthz") + req("GET", "/v1/services", "prov")
    + req("POST", "/v1/services", "prov", SVC_BODY)
    + req("GET", "/v1/services", "prov"),
    "create-then-list": req("POST", "/v1/services", "prov", SVC_BODY)
    + req("POST", "/v1/endpoints", "shop",
          '{"service":"web","network":"shop-vpc"}')
    + req("GET", "/v1/endpoints", "shop"),
    "connection-close": req("GET", "/healthz", extra=("Connection: close",))
    + req("GET", "/healthz"),
    "chunked-body": chunked("POST", "/v1/services", "prov",
                            [SVC_BODY[:10].encode(), SVC_BODY[10:].encode()]),
    "chunked-trailer": req("POST", "/v1/services", "prov",
                           extra=("Transfer-Encoding: chunked",))
    + b"2\r\n{}\r\n0\r\nX-Trailer: 1\r\n\r\n",
    "chunk-no-crlf": req("POST", "/v1/services", "prov",
                         extra=("Transfer-Encoding: chunked",))
    + b"2\r\n{}XX0\r\n\r\n",
    "expect-continue": req("POST", "/v1/services", "prov", SVC_BODY,
                           extra=("Expect: 100-continue",)),
    "absolute-form": req("GET", "http://api:9180/v1/services?limit=1", "ops"),
    "events-stream": req("POST", "/v1/services", "prov", SVC_BODY)
    + req("POST", "/v1/endpoints", "shop",
          '{"service":"web","network":"shop-vpc"}')
    + req("GET", "/v1/events?after=0", "shop") + req("GET", "/healthz"),
    "events-http10": req("GET", "/v1/events", "ops", version="1.0",
                         host=False),
    "no-host": req("GET", "/healthz", host=False),
    "two-hosts": req("GET", "/healthz", extra=("Host: other",)),
    "two-authorizations": req("GET", "/v1/services", "prov",
                              extra=("Authorization: Bearer x",)),
    "te-and-cl": req("POST", "/v1/services", "prov", "{}",
                     extra=("Transfer-Encoding: chunked",)),
    "te-gzip": req("POST", "/v1/services", "prov",
                   extra=("Transfer-Encoding: gzip, chunked",)) + b"0\r\n\r\n",
    "two-content-lengths": req("POST", "/v1/services", "prov", "{}",
                               extra=("Content-Length: 3",)),
    "body-too-large": req("POST", "/v1/services", "prov",
                          extra=("Content-Length: 70000",)),
    "bare-lf": b"GET /healthz HTTP/1.1\nHost: api\n\n",
    "bare-cr": b"GET /healthz HTTP/1.1\rHost: api\r\n\r\n",
    "obs-fold": b"GET /healthz HTTP/1.1\r\nHost: api\r\nX: a\r\n b\r\n\r\n",
    "space-in-name": b"GET /healthz HTTP/1.1\r\nHost : api\r\n\r\n",
    "http2-version": b"GET /healthz HTTP/2.0\r\nHost: api\r\n\r\n",
    "bad-method": b"BREW /healthz HTTP/1.1\r\nHost: api\r\n\r\n",
    "long-path": req("GET", "/v1/services/" + "a" * 5000, "ops"),
    "long-header": req("GET", "/healthz", extra=("X-Big: " + "b" * 17000,)),
    "partial-request": b"GET /v1/services HTTP/1.1\r\nHost: a",
    "partial-body": req("POST", "/v1/services", "prov",
                        extra=("Content-Length: 100",)) + b'{"name":',
    "garbage": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "nul-in-header": b"GET /healthz HTTP/1.1\r\nHost: a\0b\r\n\r\n",
    "method-not-allowed": req("PUT", "/v1/services", "ops", "{}"),
    "head-services": req("HEAD", "/v1/services", "ops") + req("GET",
                                                              "/healthz"),
    "unauthorized-then-ok": req("GET", "/v1/services")
    + req("GET", "/v1/services", "ops"),
    # The registry's IDs and tokens come from a counter reset per input:
    # the first token made is always this one.
    "token-revoked-closes": req("POST", "/v1/principals", "ops",
                                '{"name":"team","role":"provider"}')
    + req("GET", "/v1/services", extra=(
        "Authorization: Bearer nlb_r_RP7Jvq4TzDpgn2ey8Zq1WGZKzXDWpMaXsAEBZyTyU",))
    + req("DELETE", "/v1/principals/team/tokens/tok-b029f7c383a1df292", "ops")
    + req("GET", "/healthz"),
    "target-register": req("POST", "/v1/target-groups/web-tg/targets", "ops",
                           '{"address":"127.0.0.1:9100"}')
    + req("DELETE", "/v1/target-groups/web-tg/targets/127.0.0.1%3A9100",
          "ops"),
}

# ---- h2 -------------------------------------------------------------------
# Raw client bytes of one cleartext HTTP/2 connection. Header blocks are
# HPACK literals without Huffman (some indexed, to fill the dynamic table).

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST, SETTINGS, PING, GOAWAY, WINDOW, CONT = (
    0, 1, 2, 3, 4, 6, 7, 8, 9)
END_STREAM, END_HEADERS, PADDED, PRIO, ACK = 1, 4, 8, 0x20, 1


def frame(ftype, flags, stream, payload=b""):
    return (struct.pack("!I", len(payload))[1:] + bytes([ftype, flags])
            + struct.pack("!I", stream) + payload)


def hpack_int(value, prefix_bits, first):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def literal(name, value, indexed=False):
    """A literal field, new name: with incremental indexing or without."""
    name, value = name.encode(), value.encode()
    return (bytes([0x40 if indexed else 0x00]) + hpack_int(len(name), 7, 0)
            + name + hpack_int(len(value), 7, 0) + value)


def block(method, path, who=None, extra=(), length=None):
    out = literal(":method", method) + b"\x86"  # :scheme http (static 6)
    out += literal(":path", path) + literal(":authority", "api", True)
    if who:
        out += literal("authorization", "Bearer %s-token" % who)
    for name, value in extra:
        out += literal(name, value)
    if length is not None:
        out += literal("content-length", str(length))
    return out


def settings(*pairs, flags=0):
    return frame(SETTINGS, flags, 0,
                 b"".join(struct.pack("!HI", k, v) for k, v in pairs))


START = PREFACE + settings() + settings(flags=ACK)


def h2req(stream, method, path, who=None, body=None, extra=()):
    data = body.encode() if isinstance(body, str) else body
    head = block(method, path, who, extra,
                 len(data) if data is not None else None)
    if data is None:
        return frame(HEADERS, END_HEADERS | END_STREAM, stream, head)
    return (frame(HEADERS, END_HEADERS, stream, head)
            + frame(DATA, END_STREAM, stream, data))


def window(stream, increment):
    return frame(WINDOW, 0, stream, struct.pack("!I", increment))


def rst(stream, code=8):
    return frame(RST, 0, stream, struct.pack("!I", code))


EP_BODY = '{"service":"web","network":"shop-vpc"}'
BIG = b"x" * 16000

H2 = {
    "get-healthz": START + h2req(1, "GET", "/healthz"),
    "without-preface": settings() + h2req(1, "GET", "/healthz"),
    "head-healthz": START + h2req(1, "HEAD", "/healthz"),
    "services-token": START + h2req(1, "GET", "/v1/services", "prov"),
    "services-no-token": START + h2req(1, "GET", "/v1/services"),
    "services-bad-token": START + h2req(1, "GET", "/v1/services",
                                        extra=(("authorization",
                                                "Bearer nope"),)),
    "create-then-list": START + h2req(1, "POST", "/v1/services", "prov",
                                      SVC_BODY)
    + h2req(3, "POST", "/v1/endpoints", "shop", EP_BODY)
    + h2req(5, "GET", "/v1/endpoints", "shop")
    + h2req(7, "GET", "/v1/services?limit=1", "ops"),
    "routes": START + b"".join(
        h2req(1 + 2 * i, m, path, who) for i, (m, path, who) in enumerate([
            ("GET", "/metrics", "ops"), ("GET", "/v1/target-groups", "ops"),
            ("GET", "/v1/nodes", "ops"), ("GET", "/v1/available-services",
                                          "shop"),
            ("GET", "/v1/principals", "ops"), ("GET", "/v1/networks", "ops"),
            ("PUT", "/v1/services", "ops"), ("GET", "/nope", "prov2"),
            ("DELETE", "/v1/services/svc-00000000000000000", "shop2")])),
    "events-stream": START + h2req(1, "POST", "/v1/services", "prov",
                                   SVC_BODY)
    + h2req(3, "GET", "/v1/events?after=0", "shop")
    + h2req(5, "POST", "/v1/endpoints", "shop", EP_BODY)
    + window(0, 1000),
    "body-in-pieces": START
    + frame(HEADERS, END_HEADERS, 1, block("POST", "/v1/services", "prov"))
    + frame(DATA, 0, 1, SVC_BODY[:9].encode())
    + frame(DATA, PADDED, 1, b"\x03" + SVC_BODY[9:].encode() + b"\0\0\0")
    + frame(DATA, END_STREAM, 1, b""),
    "reset-mid-body": START
    + frame(HEADERS, END_HEADERS, 1, block("POST", "/v1/services", "prov",
                                           length=len(SVC_BODY)))
    + frame(DATA, 0, 1, SVC_BODY[:10].encode()) + rst(1)
    + h2req(3, "GET", "/healthz"),
    "reset-while-waiting": START + h2req(1, "GET", "/v1/services", "prov")
    + rst(1) + h2req(3, "POST", "/v1/services", "prov", SVC_BODY) + rst(3)
    + h2req(5, "GET", "/v1/services", "prov"),
    "goaway-from-client": START + h2req(1, "GET", "/v1/services", "ops")
    + frame(GOAWAY, 0, 0, struct.pack("!II", 1, 0))
    + h2req(3, "GET", "/healthz"),
    "window-dance": START + settings((4, 16)) + h2req(1, "GET",
                                                      "/v1/openapi.yaml")
    + window(1, 100) + window(0, 50) + window(1, 1 << 20)
    + window(0, 1 << 20) + settings((4, 65535)),
    "window-never-opens": START + settings((4, 0))
    + h2req(1, "GET", "/v1/openapi.yaml") + h2req(3, "GET", "/healthz"),
    "window-overflow": START + window(0, 0x7fffffff) + window(0, 0x7fffffff),
    # Answers that wait for a window: the connection's output budget holds
    # back the requests after the first few (static answers, and answers
    # made per request), until a window opens or a stream is reset.
    "window-shut-openapi": START + settings((4, 0)) + b"".join(
        h2req(1 + 2 * i, "GET", "/v1/openapi.yaml", "ops")
        for i in range(100)),
    "window-shut-metrics": START + settings((4, 0)) + b"".join(
        h2req(1 + 2 * i, "GET", "/metrics", "ops") for i in range(100)),
    "window-shut-no-token": START + settings((4, 0)) + b"".join(
        h2req(1 + 2 * i, "GET", "/v1/openapi.yaml") for i in range(20)),
    "connection-window-never-updated": START + settings((4, 0x7fffffff))
    + b"".join(h2req(1 + 2 * i, "GET", "/v1/openapi.yaml", "ops")
               for i in range(20)),
    "window-shut-then-opened": START + settings((4, 0)) + b"".join(
        h2req(1 + 2 * i, "GET", "/v1/openapi.yaml", "ops")
        for i in range(20)) + settings((4, 65535)) + window(0, 1 << 30),
    "window-shut-client-resets": START + settings((4, 0)) + b"".join(
        h2req(1 + 2 * i, "GET", "/v1/openapi.yaml", "ops")
        for i in range(10)) + rst(1) + rst(3) + rst(5) + b"".join(
        h2req(21 + 2 * i, "GET", "/metrics", "ops") for i in range(10)),
    "ping-flood": START + frame(PING, 0, 0, b"12345678") * 1100,
    "settings-flood": START + settings((3, 50)) * 1100,
    "continuation": START
    + frame(HEADERS, END_STREAM, 1, block("GET", "/v1/services")[:7])
    + frame(CONT, 0, 1, block("GET", "/v1/services")[7:20])
    + frame(CONT, END_HEADERS, 1, block("GET", "/v1/services", "ops")[20:]),
    "continuation-interrupted": START
    + frame(HEADERS, END_STREAM, 1, block("GET", "/healthz")[:5])
    + frame(PING, 0, 0, b"12345678"),
    "huge-header-block": START + frame(
        HEADERS, END_STREAM, 1, block("GET", "/healthz", "ops",
                                      (("x-big", "b" * 15000),
                                       ("x-big2", "b" * 5000)))[:16000])
    + frame(CONT, END_HEADERS, 1, block("GET", "/healthz", "ops",
                                        (("x-big", "b" * 15000),
                                         ("x-big2", "b" * 5000)))[16000:]),
    # Over the hard limit (64 KiB): the connection goes.
    "header-flood": START + frame(HEADERS, END_STREAM | END_HEADERS, 1,
                                  block("GET", "/healthz"))
    + frame(HEADERS, END_STREAM, 3, block("GET", "/healthz"))
    + b"".join(frame(CONT, 0, 3, literal("x-f%d" % i, "f" * 15000))
               for i in range(5))
    + frame(CONT, END_HEADERS, 3, b""),
    "trailers": START
    + frame(HEADERS, END_HEADERS, 1, block("POST", "/v1/services", "prov"))
    + frame(DATA, 0, 1, SVC_BODY.encode())
    + frame(HEADERS, END_HEADERS | END_STREAM, 1,
            literal("x-trailer", "1") + literal("authorization", "x")),
    "header-block-never-ends": START
    + frame(HEADERS, END_STREAM, 1, block("GET", "/v1/services", "ops")),
    "long-path": START + h2req(1, "GET", "/v1/services/" + "a" * 5000,
                               "ops"),
    "body-too-large-length": START
    + frame(HEADERS, END_HEADERS, 1, block("POST", "/v1/services", "prov",
                                           length=70000))
    + frame(DATA, 0, 1, b"{}"),
    "body-over-limit": START
    + frame(HEADERS, END_HEADERS, 1, block("POST", "/v1/services", "prov"))
    + frame(DATA, 0, 1, BIG) * 4 + frame(DATA, END_STREAM, 1, BIG)
    + h2req(3, "GET", "/healthz"),
    "body-no-token-dropped": START
    + frame(HEADERS, END_HEADERS, 1, block("POST", "/v1/services"))
    + frame(DATA, 0, 1, BIG) + frame(DATA, END_STREAM, 1, b"{}"),
    "partial-request": START
    + frame(HEADERS, END_HEADERS, 1, block("POST", "/v1/services", "prov",
                                           length=100))
    + frame(DATA, 0, 1, b'{"name":'),
    "tokenless-streams": START + b"".join(
        frame(HEADERS, END_HEADERS, 1 + 2 * i, block("POST", "/v1/services"))
        for i in range(10)) + h2req(21, "GET", "/healthz"),
    "two-authorizations": START + h2req(
        1, "GET", "/v1/services", "prov",
        extra=(("authorization", "Bearer ops-token"),)),
    "no-path": START + frame(HEADERS, END_HEADERS | END_STREAM, 1,
                             literal(":method", "GET") + b"\x86"),
    "priority-and-padding": START
    + frame(PRIORITY, 0, 3, struct.pack("!IB", 0, 15))
    + frame(HEADERS, END_HEADERS | END_STREAM | PADDED | PRIO, 1,
            b"\x04" + struct.pack("!IB", 0, 200)
            + block("GET", "/v1/services", "ops") + b"\0\0\0\0"),
    "client-settings": START + settings((1, 0), (2, 0), (3, 1), (5, 16777215),
                                        (6, 100), (9, 1))
    + h2req(1, "GET", "/v1/openapi.yaml", "ops") + h2req(3, "GET",
                                                         "/metrics", "prov"),
    "bad-frames": START + frame(DATA, END_STREAM, 9, b"x")
    + frame(HEADERS, END_HEADERS, 2, block("GET", "/healthz"))
    + frame(WINDOW, 0, 1, b"\0\0\0\0") + frame(0x42, 0, 0, b"unknown"),
    "garbage-after-preface": PREFACE + b"GET / HTTP/1.1\r\n\r\n",
    "stream-id-backwards": START + h2req(5, "GET", "/healthz")
    + h2req(3, "GET", "/healthz"),
    "target-register": START + h2req(
        1, "POST", "/v1/target-groups/web-tg/targets", "ops",
        '{"address":"127.0.0.1:9100"}')
    + h2req(3, "DELETE", "/v1/target-groups/web-tg/targets/127.0.0.1%3A9100",
            "ops"),
}


def write(target, seeds):
    out = os.path.join(HERE, "corpus", target)
    os.makedirs(out, exist_ok=True)
    for name, data in seeds.items():
        if isinstance(data, str):
            data = data.encode()
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    print("%s: %d seeds" % (target, len(seeds)))


if __name__ == "__main__":
    write("config", CONFIG)
    write("proxy_v2", PROXY)
    write("api", API)
    write("http1", HTTP1)
    write("h2", H2)
