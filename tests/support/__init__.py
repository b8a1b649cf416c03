"""The one home of the test suite's helpers; test modules import them from here, never from
each other.

Each submodule holds one kind of helper.  The names of ``server``, ``live``, ``proxy``,
``responses``, ``forms`` and ``browser`` are importable from ``tests.support`` itself; those
of ``settings`` (whose ``make_site`` and ``write_settings`` differ from these), ``access``
(whose ``write`` and ``basic`` are generic names), ``upload``, ``fakes``, ``heads``,
``interpreters``, ``threads``, ``descriptors`` and ``metrics`` from their modules.
"""

from tests.support.server import (REPO, START_TIMEOUT, SOCKET_TIMEOUT, SETTLE_DEADLINE,
                                  COMBINED_LOG_LINE, OPENSSL, requires_openssl, wait_until,
                                  wait_for_line, make_certificate, client_context, write_settings,
                                  NexServer, exchange, read_all, reset, ResponseReader, capture_log,
                                  CapturedLog, socketpair_dispatcher, connection_over_socketpair,
                                  merge_settings, http_request, tls_pair, tcp_pair, run_server,
                                  quiet_config, in_process_server, children, running,
                                  process_state, describe_processes)
from tests.support.live import (REQUEST, HELLO, LARGE, large_root, stalled_download, Reply,
                                read_until_closed, parse_replies,
                                send_and_read, connect, process_status, open_descriptors,
                                resources, wait_for_resources, make_site, LiveServerTest, head,
                                fetch_all_at_once, temp_root,
                                alpha_root, hold_a_request, check_reloaded, get,
                                reload_under_traffic)
from tests.support.proxy import (BACKLOG, Exchange, ThenClose, Answer, ok, RawOrigin, duplex,
                                 free_port, proxy_settings, make_root, ProxyTestCase, EchoOrigin,
                                 ThreadedOrigin, read_head, open_tunnel, receive_exactly)
from tests.support.responses import (MTIME, MTIME_DATE, file_request, TempFolder, TempFiles, close,
                                     fields, body_bytes, parse_multipart, make_request)
from tests.support.forms import (FORM_BOUNDARY, BOUNDARY, FORM_TYPE, HTML, part, form, file_part,
                                 form_body)
from tests.support.browser import (CHROMIUM, CHROMEDRIVER, PUBLIC_HTML, SAMPLES, WAIT,
                                   CHROMIUM_FLAGS, missing_requirements, ChromiumTestCase)
