"""Assembly: one :class:`Dispatcher` built from the settings, before the listener starts.

The listener only listens; everything the workers share (templates, Host rules, the
small-file cache, trusted proxies, the login for protected paths, the CORS policy, the
forward proxy with its pool of origin connections) is put together here, once per process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

from nex import SERVER_SOFTWARE
from nex.site.login import SiteAuth
from nex.process.config import Config, ConfigError
from nex.site.cors import CorsPolicy
from nex.site.routing import SERVED_METHODS, Dispatcher
from nex.files.filecache import SmallFileCache
from nex.files.misses import MissCache
from nex.files.opencache import OpenFileCache
from nex.site.clients import ForwardedFor
from nex.site.hosts import HostValidator
from nex.proxy.figures import Tally
from nex.proxy.handler import ForwardProxy
from nex.files.templates import TemplateSet
from nex.files.webdav import WebDav
from nex.files.uploadpage import UploadPage
from nex.process.values import shipped_path
from nex.process.interfaces import lan_address

if TYPE_CHECKING:
    from nex.files.davlocks import LockTable


def assemble(config: Config, port: int, *, on_error: Callable[[str], None],
             locks: Optional[LockTable] = None, tally: Optional[Tally] = None) -> Dispatcher:
    """The dispatcher for ``config``, serving on ``port`` (shown in page footers), with the
    WebDAV lock table ``locks`` (None: one of its own).

    ``on_error`` receives one line when a file Nex re-reads while running (a users file, the
    proxy's blacklist file) changes into something it cannot use; the proxy counts into
    ``tally`` (the metrics' :meth:`~nex.process.metrics.Metrics.proxy_tally`).  Raises
    ``TemplateError`` when a page template cannot be loaded, ``ConfigError`` when such a file
    turned bad after the settings were checked.
    """
    try:
        auth = SiteAuth.from_config(config, on_error=on_error)
    except ValueError as error:
        raise ConfigError(f"[auth] users_file: {error}") from None
    try:
        proxy = (ForwardProxy.from_config(config, listen_port=port, on_error=on_error,
                                          tally=tally)
                 if config.proxy_enabled else None)
    except ValueError as error:
        raise ConfigError(f"[proxy]: {error}") from None
    templates = TemplateSet.load(config.error_pages, config.templates)
    return Dispatcher(
        config=config,
        templates=templates,
        hosts=HostValidator(config.allowed_hosts),
        signature=f"{SERVER_SOFTWARE} Server at {config.server_name} Port {port}",
        file_cache=SmallFileCache(config.file_cache_size) if config.file_cache_size else None,
        open_files=(OpenFileCache(config.open_file_cache, config.open_file_cache_idle)
                    if config.open_file_cache else None),
        misses=MissCache(),
        forwarded=ForwardedFor(config.trusted_proxies) if config.trusted_proxies else None,
        auth=auth,
        cors=(CorsPolicy(config.cors_allow_origins, SERVED_METHODS)
              if config.cors_allow_origins else None),
        proxy=proxy,
        dav=WebDav.for_site(config, locks),
        upload_page=(UploadPage.load(config.templates, shipped_path("other_templates"))
                     if config.upload else None),
        port=port,
        lan_address=lan_address(config.bind),
    )
