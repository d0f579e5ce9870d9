"""Where the fleet page is served: the plugin's mount point and the page's path under it."""

from __future__ import annotations

URL_PREFIX = "/modelyard"
PAGE_PATH = "/fleet"
